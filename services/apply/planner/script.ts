/**
 * What planners produce (pure): scripts of statements for one simple-protocol round trip. A
 * statement is prepared once per connection (`PREPARE`, see executor/prepared-statements.ts) and
 * run by `EXECUTE` with its values as SQL literals, so a script is one string PostgreSQL parses
 * once; parsing and planning a statement per transaction cost several times the write itself.
 *
 * A planned local transaction carries what it expects: every grouped statement applies its rows
 * only if they are in the state the plan rests on, and otherwise raises SQLSTATE BR001 through
 * `brabant.expect_rows`. PostgreSQL then skips the rest of the script; the transactions before
 * stay committed, and the outcome reader tells which from the origin's session progress.
 */
import type { RowChange } from '../../protocol/change-decoder.ts';
import type { Lsn } from '../../protocol/lsn.ts';
import type { ConflictRecord, DeadLetter } from '../outcome/conflict-log.ts';

/**
 * A string literal for `standard_conforming_strings = on` (apply sessions set it): quotes are
 * doubled, backslashes are plain characters. PostgreSQL text cannot hold NUL, so none arrive.
 */
export function literal(v: string): string {
  return v.includes("'") ? `'${v.replace(/'/g, "''")}'` : `'${v}'`;
}

/** A `text[]` literal of PostgreSQL text forms (null → NULL), as one SQL string literal. */
export function textArrayLiteral(values: (string | null)[]): string {
  // one string built in place: most values need no escaping (the hot path of every planner)
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (i > 0) out += ',';
    if (v === null) out += 'NULL';
    else if (v.includes('"') || v.includes('\\')) out += `"${v.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`;
    else out += `"${v}"`;
  }
  return literal(`${out}}`);
}

/** A statement to prepare once per connection and run by `EXECUTE` in scripts. */
export interface Statement {
  /** Body of the statement; `$n` are its parameters. */
  sql: string;
  /** SQL types of the parameters, in order; empty: the SQL casts every `$n` itself. */
  paramTypes: string[];
}

/** A statement whose SQL casts every parameter itself (sql-rows.ts). */
export function untyped(sql: string): Statement {
  return { sql, paramTypes: [] };
}

export function prepareSql(name: string, st: Statement): string {
  const types = st.paramTypes.length > 0 ? `(${st.paramTypes.join(', ')})` : '';
  return `prepare ${name}${types} as ${st.sql}`;
}

/** `execute name(args)`; args are already SQL literals. */
export function executeSql(name: string, args: string[]): string {
  return `execute ${name}(${args.join(', ')})`;
}

/**
 * The first statement of each local transaction: reads brabant.join_fence FOR UPDATE (always
 * empty: a ROW SHARE lock and no xid; `count(*)` gives one row whatever it holds): a join that
 * locks the fence EXCLUSIVE for a moment holds every origin's progress still, before this
 * transaction has an xid (capture/snapshot.ts). ACCESS EXCLUSIVE would not do: taking it assigns
 * the join an xid (it is logged for standbys), and the slot the join creates meanwhile would wait
 * for it.
 */
export const FENCE = 'select count(*) from (select from brabant.join_fence for update) f';

/**
 * The origin setup of a local transaction, its last statement before `commit`: $1 commit LSN,
 * $2 commit time of the source transaction (the commit record carries them; the rows' commit
 * time is set at commit). Not earlier: from PostgreSQL 16 on, a transaction with an xid that is
 * rolled back after the setup moves the origin's progress to $1 as if it had committed, and the
 * outcome of a script is read from that progress.
 */
export const XACT_SETUP: Statement = {
  sql: 'select pg_replication_origin_xact_setup($1, $2)',
  paramTypes: ['pg_lsn', 'timestamptz'],
};

/** Names statements for `EXECUTE` (the connection prepares them before the round trip using them). */
export interface StatementNamer {
  execute(owner: object, shape: string, build: () => Statement, args: string[]): string;
}

/**
 * A statement with no rows still takes an xid, so its commit record carries the origin's
 * progress: a source transaction without rows (heartbeat, marker) moves the origin too.
 */
export const TAKE_XID = 'select txid_current()';

/** One source transaction as a local one, whole: begin, the fence, statements, origin setup, commit. */
export function transactionScript(setup: string, statements: string[]): string {
  const body = statements.length > 0 ? statements : [TAKE_XID];
  return `begin; ${FENCE}; ${body.join('; ')}; ${setup}; commit;`;
}

/** Lookups run in a transaction that is rolled back (see resolve-ahead.ts for why). */
export function rolledBack(statements: string[]): string {
  return `begin;\n${statements.join(';\n')};\nrollback`;
}

/** A local transaction planned for one source transaction: events [start, end) of a run. */
export interface TxPlan {
  start: number;
  end: number;
  commitLsn: Lsn;
  commitTs: bigint;
  /** Row changes of the source transaction (what the outcome reports). */
  sourceRows: number;
  /** The whole local transaction as script text, from its begin to its commit. */
  script: string;
  conflicts: ConflictRecord[];
  deadLetters: DeadLetter[];
  /** Row changes per action (insert, update, …), counted in the metrics once it commits. */
  actions: Map<string, number>;
}

/** Adds `n` row changes handled with `action`. */
export function addAction(actions: Map<string, number>, action: string, n: number): void {
  if (n > 0) actions.set(action, (actions.get(action) ?? 0) + n);
}

/** A planned row change with the table it goes to and its key within the group. */
export interface PlannedRow {
  c: RowChange;
  key: string;
}
