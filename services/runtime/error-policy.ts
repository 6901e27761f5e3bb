/**
 * The one error policy: every error a service meets maps to one directive (model: supabase/etl's
 * worker policy). The retriable list is narrow and explicit; anything not known to be transient
 * stops the service with a message that names the object at fault and the fix, rather than
 * retrying forever.
 *
 * - retry:      the node, Kafka or the registry is unreachable or restarting; start the session
 *               again after a backoff.
 * - reapply:    the source transaction collided with concurrent local work (a deadlock, a key
 *               inserted locally after it was looked up); run it again from its start.
 * - deadletter: this change cannot be applied to this node as it is (bad data for the target's
 *               types or constraints); put it in the dead-letter topic, go on with the stream.
 * - stop:       a person must act (permissions, missing objects, bad configuration, a bug).
 */
import { BrabantError, isBrabantError } from './errors.ts';
import { classifyKafkaError, isKafkaError } from './kafka-errors.ts';
import { SQLSTATE, sqlstateOf } from './sqlstate.ts';
import { tlsFailure } from './tls-errors.ts';

export type Directive =
  | { kind: 'retry'; error: BrabantError }
  | { kind: 'reapply'; reason: string }
  | { kind: 'deadletter'; reason: string }
  | { kind: 'stop'; error: BrabantError };

export interface PolicyContext {
  /** What was being done, for the message: e.g. "applying changes of vl-1 to wa-1". */
  doing: string;
  /**
   * Whether a unique violation is on the key the change was looked up by: then it is a local
   * insert that raced apply (reapply); on another key it is a real conflict (dead letter).
   */
  ownKeyViolation?: (constraint: string | undefined) => boolean;
}

interface PgErrorFields {
  message?: string;
  code?: string;
  table?: string;
  schema?: string;
  column?: string;
  constraint?: string;
  routine?: string;
  detail?: string;
  hint?: string;
}

/** Classes of SQLSTATE that mean the node is unreachable, restarting or short of resources. */
const TRANSIENT_CLASSES = ['08', '53', '58'];
const TRANSIENT = new Set<string>([
  SQLSTATE.ADMIN_SHUTDOWN,
  SQLSTATE.CRASH_SHUTDOWN,
  SQLSTATE.CANNOT_CONNECT_NOW,
  SQLSTATE.QUERY_CANCELED,
  SQLSTATE.READ_ONLY_SQL_TRANSACTION,
]);
const COLLISIONS = new Set<string>([
  SQLSTATE.DEADLOCK_DETECTED,
  SQLSTATE.SERIALIZATION_FAILURE,
  SQLSTATE.LOCK_NOT_AVAILABLE,
]);
/** Errors that say the change's values do not fit the target (its types, constraints, limits). */
const DATA_CLASSES = ['22', '23', '54'];
const DATA = new Set<string>([SQLSTATE.DATATYPE_MISMATCH]);

/** The directive for an error met while `ctx.doing`. */
export function directiveFor(err: unknown, ctx: PolicyContext): Directive {
  if (isBrabantError(err) || isKafkaError(err)) {
    const e = classifyKafkaError(err, ctx.doing);
    return e.retriable ? { kind: 'retry', error: e } : { kind: 'stop', error: e };
  }
  const state = sqlstateOf(err);
  const e = (err ?? {}) as PgErrorFields;
  const detail = e.message ?? String(err);
  if (state === undefined) {
    // TLS that cannot succeed (a certificate not trusted, a server without TLS): a person must act
    const tls = tlsFailure(err);
    if (tls !== undefined)
      return { kind: 'stop', error: new BrabantError('TLS_FAILED', `${ctx.doing}: ${tls}`, { cause: err }) };
    // no SQLSTATE: the connection itself (refused, reset, closed), not a statement
    return {
      kind: 'retry',
      error: new BrabantError('SOURCE_UNAVAILABLE', `${ctx.doing}: ${detail}`, { cause: err }),
    };
  }
  const cls = state.slice(0, 2);
  if (TRANSIENT.has(state) || TRANSIENT_CLASSES.includes(cls)) {
    return {
      kind: 'retry',
      error: new BrabantError('SOURCE_UNAVAILABLE', `${ctx.doing}: ${detail} (SQLSTATE ${state})`, {
        cause: err,
      }),
    };
  }
  if (COLLISIONS.has(state)) return { kind: 'reapply', reason: `${detail} (SQLSTATE ${state})` };
  if (state === SQLSTATE.UNIQUE_VIOLATION && ctx.ownKeyViolation?.(e.constraint))
    return { kind: 'reapply', reason: `${detail} (SQLSTATE ${state})` };
  // a value of a type that takes no input at all (pg_node_tree): no node can store it as sent
  const noInput = state === SQLSTATE.FEATURE_NOT_SUPPORTED && /cannot accept a value of type/.test(detail);
  if (noInput || DATA.has(state) || DATA_CLASSES.includes(cls)) {
    const on = e.constraint ? ` (constraint ${e.constraint})` : e.column ? ` (column ${e.column})` : '';
    return { kind: 'deadletter', reason: `${detail}${on} (SQLSTATE ${state})` };
  }
  return {
    kind: 'stop',
    error: new BrabantError(stopCode(state), stopMessage(state, e, ctx), { cause: err }),
  };
}

function stopCode(
  state: string,
): 'PERMISSION_DENIED' | 'CATALOG_MISMATCH' | 'CONFIG_INVALID' | 'AUTHENTICATION_FAILED' {
  if (state === SQLSTATE.INSUFFICIENT_PRIVILEGE) return 'PERMISSION_DENIED';
  if (state.startsWith('28')) return 'AUTHENTICATION_FAILED';
  if (state === SQLSTATE.INVALID_CATALOG_NAME) return 'CONFIG_INVALID';
  return 'CATALOG_MISMATCH';
}

function stopMessage(state: string, e: PgErrorFields, ctx: PolicyContext): string {
  const object = e.table
    ? `table ${e.schema ? `${e.schema}.` : ''}${e.table}`
    : e.routine && state === SQLSTATE.UNDEFINED_FUNCTION
      ? `function ${e.routine}`
      : undefined;
  const what = `${ctx.doing}: ${e.message ?? 'error'} (SQLSTATE ${state})${object ? ` on ${object}` : ''}`;
  switch (state) {
    case SQLSTATE.INSUFFICIENT_PRIVILEGE:
      return `${what}; grant the role Brabant connects as the privilege it lacks (brabant node init grants what capture and apply need: docs/security.md), then start the service again`;
    case SQLSTATE.UNDEFINED_FUNCTION:
    case SQLSTATE.UNDEFINED_TABLE:
    case SQLSTATE.UNDEFINED_OBJECT:
      return `${what}; an object Brabant needs is missing on the node: start the service again (it creates its own objects in schema brabant), or restore what was dropped`;
    case SQLSTATE.INVALID_CATALOG_NAME:
      return `${what}; the database in the node's URL does not exist: create it or fix the URL`;
    case SQLSTATE.INVALID_AUTHORIZATION:
      return `${what}; the node's pg_hba.conf refuses this connection (a secured node takes TLS with a SCRAM password only): connect with sslmode=verify-full, or fix pg_hba.conf`;
    case SQLSTATE.INVALID_PASSWORD:
      return `${what}; the node refused the credentials: fix the user in the node's URL or its password (BRABANT_PG_PASSWORD_FILE, PGPASSWORD; brabant node init sets the roles' passwords)`;
    default:
      return `${what}${e.hint ? `; hint: ${e.hint}` : ''}; this needs a person: see the node's log for the statement`;
  }
}
