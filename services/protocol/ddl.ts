/**
 * The DDL event of the wire contract: what a node's event trigger emits, in the DDL's own
 * transaction, as a transactional logical message with prefix `brabant.ddl`, so peers meet it at
 * exactly its place among the rows, and a rolled-back DDL is never sent. Its content is JSON
 * (version 1), decoded and validated here for apply and for tools.
 */
import { BrabantError } from '../runtime/errors.ts';

export const DDL_MESSAGE_PREFIX = 'brabant.ddl';
export const DDL_EVENT_VERSION = 1;
/** NOTIFY channel on which a node says its catalog changed (any DDL, replicated or local-only). */
export const CATALOG_CHANNEL = 'brabant_catalog';

/** A table after the change, as the node describes it (to check a peer ends with the same shape). */
export interface DdlTable {
  schema: string;
  name: string;
  columns: {
    name: string;
    /** format_type(atttypid, atttypmod), e.g. `numeric(10,2)`. */
    type: string;
    notNull: boolean;
    /** The default expression, or null. */
    default: string | null;
    /** attidentity: '' none, 'a' always, 'd' by default. */
    identity: string;
    /** attgenerated: '' none, 's' stored. */
    generated: string;
  }[];
  primaryKey: string[];
  /** relreplident: d default, n nothing, f full, i index. */
  replicaIdentity: string;
  /** md5 of the canonical description: the same on every node that holds the same shape. */
  fingerprint: string;
}

export interface DdlEvent {
  version: number;
  /** The statement that ran this DDL: the client's whole query string when it held one statement, else the one of it. */
  statement: string;
  /** search_path when it ran: unqualified names resolve the same on the peer. */
  searchPath: string;
  /** The role it ran as (current_user): objects it creates are owned the same on the peer. */
  role: string;
  /** Command tags of this query's DDL commands, e.g. ALTER TABLE. */
  tags: string[];
  /** Which DDL statement of its query string this is (0 for the first). */
  seq: number;
  /** CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY: they cannot run inside a transaction block. */
  concurrently: boolean;
  /** The objects the command created or altered (pg_event_trigger_ddl_commands). */
  objects: { type: string; identity: string }[];
  /** The objects it dropped (pg_event_trigger_dropped_objects). */
  dropped: { type: string; identity: string }[];
  /** The affected tables after the change. */
  tables: DdlTable[];
  /** Columns the change renamed (told apart from a drop and an add by their attnum). */
  renames: { table: string; from: string; to: string }[];
}

function fail(what: string): never {
  throw new BrabantError('UNDECODABLE', `DDL event: ${what}`);
}

const isString = (v: unknown): v is string => typeof v === 'string';

/** Reads a DDL event's content; a malformed one is UNDECODABLE, a newer version ENVELOPE_UNSUPPORTED. */
export function decodeDdlEvent(content: Buffer): DdlEvent {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(content.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    return fail(`content is not JSON (${(err as Error).message})`);
  }
  if (typeof v !== 'object' || v === null) return fail('content is not a JSON object');
  if (typeof v.version !== 'number') return fail('no version');
  if (v.version > DDL_EVENT_VERSION) {
    throw new BrabantError(
      'ENVELOPE_UNSUPPORTED',
      `a DDL event has version ${v.version}, but this build reads versions up to ${DDL_EVENT_VERSION}: upgrade apply`,
    );
  }
  if (!isString(v.statement) || v.statement.trim() === '') return fail('no statement');
  if (!isString(v.searchPath)) return fail('no searchPath');
  if (!isString(v.role)) return fail('no role');
  const list = <T>(x: unknown, name: string): T[] =>
    Array.isArray(x) ? (x as T[]) : fail(`${name} is not a list`);
  return {
    version: v.version,
    statement: v.statement,
    searchPath: v.searchPath,
    role: v.role,
    tags: list<string>(v.tags, 'tags'),
    seq: typeof v.seq === 'number' ? v.seq : 0,
    concurrently: v.concurrently === true,
    objects: list(v.objects ?? [], 'objects'),
    dropped: list(v.dropped ?? [], 'dropped'),
    tables: list(v.tables ?? [], 'tables'),
    renames: list(v.renames ?? [], 'renames'),
  };
}
