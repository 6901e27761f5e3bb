/**
 * Typed errors with codes. One table of codes says what each means and whether retrying can help;
 * the message a user sees names the object at fault and the fix.
 */

export const ERROR_CODES = {
  CONFIG_INVALID: { retriable: false, summary: 'a configuration option has a bad value' },
  PREREQUISITE_MISSING: { retriable: false, summary: 'a program Brabant needs is not installed' },
  PORT_IN_USE: { retriable: false, summary: 'a loopback port Brabant wants to listen on is taken' },
  DOWNLOAD_FAILED: { retriable: true, summary: 'fetching a component (Kafka or registry jars) failed' },
  DATA_DIR_LEFT_OVER: { retriable: false, summary: 'a data folder from an earlier run is in the way' },
  STACK_ALREADY_RUNNING: { retriable: false, summary: 'a local stack is already running from this folder' },
  STACK_NOT_RUNNING: { retriable: false, summary: 'no local stack is running from this folder' },
  HOME_UNREACHABLE: {
    retriable: false,
    summary: 'the PostgreSQL OS user cannot enter the stack folder (BRABANT_HOME)',
  },
  STOP_FAILED: { retriable: false, summary: 'a process of the local stack did not stop' },
  COMPONENT_START_FAILED: { retriable: false, summary: 'a component exited or never became ready' },
  TIMEOUT: { retriable: true, summary: 'a condition was not met before its deadline' },
  REGISTRY_ERROR: { retriable: true, summary: 'the schema registry refused or failed a request' },
  VALUE_UNREPRESENTABLE: { retriable: false, summary: 'a column value cannot be carried in its Avro type' },
  UNDECODABLE: { retriable: false, summary: 'a message cannot be decoded (framing, schema id or body)' },
  SCHEMA_REGISTRATION_WAITING: {
    retriable: true,
    summary:
      'a new schema must be registered in the primary region’s registry, which cannot be reached; nothing is made up meanwhile',
  },
  SCHEMA_UNAVAILABLE: {
    retriable: true,
    summary: 'the schema registry does not have (or cannot give) the schema a record was written with',
  },
  ENVELOPE_UNSUPPORTED: {
    retriable: false,
    summary: 'a record was written with a newer envelope version than this build reads',
  },
  CATALOG_MISMATCH: { retriable: false, summary: 'the node catalog does not hold what the stream refers to' },
  CATALOG_CHANGED: {
    retriable: true,
    summary: 'a table changed on the node while apply held its former shape: the session reads it anew',
  },
  REPLICA_IDENTITY_MISSING: {
    retriable: false,
    summary: 'a replicated table has no usable replica identity',
  },
  SLOT_LOST: { retriable: false, summary: 'the replication slot was dropped or is unusable' },
  SLOT_IN_USE: { retriable: false, summary: 'another process streams from the replication slot' },
  MESSAGE_TOO_LARGE: { retriable: false, summary: 'an event is larger than the topic accepts' },
  SOURCE_UNAVAILABLE: {
    retriable: true,
    summary: 'the PostgreSQL node cannot be reached or dropped the connection',
  },
  KAFKA_UNAVAILABLE: { retriable: true, summary: 'Kafka cannot be reached or refused a request' },
  FENCED: { retriable: false, summary: 'a newer instance of this service took over' },
  DDL_FAILED: {
    retriable: false,
    summary: 'a replicated DDL failed on this node; its origin’s stream is paused there until resolved',
  },
  SCHEMA_INCOMPATIBLE: { retriable: false, summary: 'a schema change breaks the compatibility rules' },
  POLICY_INVALID: {
    retriable: false,
    summary: 'a conflict policy names a table, column, kind or function it cannot apply to',
  },
  PERMISSION_DENIED: {
    retriable: false,
    summary: 'the role a service connects as lacks a privilege it needs',
  },
  PROTOCOL_ERROR: { retriable: false, summary: 'a peer broke the PostgreSQL wire protocol' },
  INTERNAL_ERROR: {
    retriable: false,
    summary: 'an unexpected error in Brabant itself (a bug): retrying would repeat it',
  },
  AUTHENTICATION_FAILED: {
    retriable: false,
    summary:
      'a server refused this service’s credentials (user or password), or its rules refuse the connection (pg_hba: no TLS)',
  },
  TLS_FAILED: {
    retriable: false,
    summary:
      'a TLS connection failed: the server’s certificate is not trusted or not for its name, or it refused this client’s certificate',
  },
  SERVER_REFUSED: {
    retriable: false,
    summary: 'a PostgreSQL node refused a connection (authentication, database, connection limit)',
  },
  NODE_NOT_EMPTY: { retriable: false, summary: 'a node to join already holds tables or data' },
  NODE_ID_IN_USE: { retriable: false, summary: 'a node id is already a member of the cluster' },
  NODE_IS_LEADER: {
    retriable: false,
    summary: 'a node to part is the write leader its region’s router points to',
  },
  NODE_STILL_RUNNING: {
    retriable: false,
    summary: 'a node to part still runs its services, or holds changes not yet in Kafka',
  },
  NODE_PARTED: { retriable: false, summary: 'the node left the cluster (brabant node part)' },
  JOIN_FAILED: { retriable: false, summary: 'a join stopped before the node caught up' },
  RESTORE_TOO_OLD: {
    retriable: false,
    summary: 'a database restored from a backup is older than what Kafka still holds',
  },
  RESTORE_PENDING: {
    retriable: true,
    summary:
      'the database went back in time (restored from a backup); capture waits until apply has taken over its lost changes',
  },
} as const satisfies Record<string, { retriable: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class BrabantError extends Error {
  override readonly name = 'BrabantError';
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retriable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options?.retriable ?? ERROR_CODES[code].retriable;
  }
}

export function isBrabantError(err: unknown, code?: ErrorCode): err is BrabantError {
  return err instanceof BrabantError && (code === undefined || err.code === code);
}

/** One line for a person: `CODE: message`, falling back to the plain message for foreign errors. */
export function describeError(err: unknown): string {
  if (err instanceof BrabantError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
