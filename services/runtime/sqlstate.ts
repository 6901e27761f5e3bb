/**
 * PostgreSQL error codes (SQLSTATE) Brabant acts on, named once: no SQLSTATE literal appears
 * anywhere else. https://www.postgresql.org/docs/15/errcodes-appendix.html
 */
export const SQLSTATE = {
  // class 08: connection exception
  CONNECTION_EXCEPTION: '08000',
  CONNECTION_FAILURE: '08006',
  PROTOCOL_VIOLATION: '08P01',
  // class 0A
  FEATURE_NOT_SUPPORTED: '0A000',
  // class 22: data exception
  INVALID_PARAMETER_VALUE: '22023',
  INVALID_TEXT_REPRESENTATION: '22P02',
  // class 23: integrity constraint violation
  NOT_NULL_VIOLATION: '23502',
  FOREIGN_KEY_VIOLATION: '23503',
  UNIQUE_VIOLATION: '23505',
  CHECK_VIOLATION: '23514',
  EXCLUSION_VIOLATION: '23P01',
  // class 25
  READ_ONLY_SQL_TRANSACTION: '25006',
  // class 28: invalid authorization specification
  INVALID_AUTHORIZATION: '28000',
  INVALID_PASSWORD: '28P01',
  // class 3D
  INVALID_CATALOG_NAME: '3D000',
  // class 40: transaction rollback
  SERIALIZATION_FAILURE: '40001',
  DEADLOCK_DETECTED: '40P01',
  // class 42: syntax error or access rule violation
  INSUFFICIENT_PRIVILEGE: '42501',
  SYNTAX_ERROR: '42601',
  UNDEFINED_COLUMN: '42703',
  DATATYPE_MISMATCH: '42804',
  UNDEFINED_FUNCTION: '42883',
  UNDEFINED_TABLE: '42P01',
  UNDEFINED_OBJECT: '42704',
  DUPLICATE_OBJECT: '42710',
  // class 53: insufficient resources
  TOO_MANY_CONNECTIONS: '53300',
  // class 55: object not in prerequisite state
  OBJECT_IN_USE: '55006',
  LOCK_NOT_AVAILABLE: '55P03',
  // class 57: operator intervention
  QUERY_CANCELED: '57014',
  ADMIN_SHUTDOWN: '57P01',
  CRASH_SHUTDOWN: '57P02',
  CANNOT_CONNECT_NOW: '57P03',
  /** Brabant's own (raised by brabant.expect_rows): a grouped statement found a row not in the state it expected. */
  BRABANT_EXPECTATION_FAILED: 'BR001',
} as const;

export type Sqlstate = (typeof SQLSTATE)[keyof typeof SQLSTATE];

/** The SQLSTATE of a PostgreSQL error (node-postgres puts it in `code`), or undefined. */
export function sqlstateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
