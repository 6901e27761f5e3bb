/**
 * The executor: the only code of apply that talks to PostgreSQL to apply changes. It sends what
 * planners made as one simple-protocol string per round trip (after preparing the statements the
 * string executes for the first time), and when a statement fails, rolls back the open
 * transaction and reads how far the script committed (the origin's session progress: each
 * committed local transaction moved it). It decides nothing: the outcome reader and the error
 * policy do.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { type Lsn, parseLsn, ZERO_LSN } from '../../protocol/lsn.ts';
import { sqlstateOf } from '../../runtime/sqlstate.ts';
import type { PreparedStatements } from './prepared-statements.ts';

/** What a script's round trip gave: every statement's result, or the failure and how far it committed. */
export type ScriptAnswer =
  | { ok: true; results: pg.QueryResult[] }
  | { ok: false; error: Error; sqlstate: string; progress: Lsn };

export type Attempt = { ok: true; result: pg.QueryResult } | { ok: false; error: Error };

/** The query that ends a failed script: its rollback, and the origin progress committed before it. */
export const ROLLBACK_AND_PROGRESS =
  'rollback; select pg_replication_origin_session_progress(false)::text as p';

export class Executor {
  constructor(
    private readonly db: Pick<pg.Client, 'query'>,
    readonly statements: PreparedStatements,
  ) {}

  /** Sends `parts` as one round trip; the result of each statement that answers. */
  async send(parts: string[]): Promise<pg.QueryResult[]> {
    await this.statements.prepareNew();
    const res = (await this.db.query(parts.join(';\n'))) as unknown as pg.QueryResult | pg.QueryResult[];
    return Array.isArray(res) ? res : [res];
  }

  /**
   * Runs a script of whole local transactions in one round trip. A statement that fails ends the
   * script there; its transaction is rolled back and the origin's session progress tells which
   * committed before it. An error without SQLSTATE (the connection) is thrown.
   */
  async runScript(script: string): Promise<ScriptAnswer> {
    try {
      return { ok: true, results: await this.send([script]) };
    } catch (err) {
      const sqlstate = sqlstateOf(err);
      if (sqlstate === undefined) throw err;
      const res = (await this.db.query(ROLLBACK_AND_PROGRESS)) as unknown as pg.QueryResult<{
        p: string | null;
      }>[];
      const p = res[1]?.rows[0]?.p;
      return { ok: false, error: err as Error, sqlstate, progress: p ? parseLsn(p) : ZERO_LSN };
    }
  }

  /**
   * Runs a script that ends in its own rollback (lookups). A failing statement leaves the
   * transaction aborted: it is rolled back here and the error returned; a connection error is thrown.
   */
  async runRolledBack(
    script: string,
  ): Promise<{ ok: true; results: pg.QueryResult[] } | { ok: false; error: Error }> {
    try {
      return { ok: true, results: await this.send([script]) };
    } catch (err) {
      if (sqlstateOf(err) === undefined) throw err;
      await this.db.query('rollback');
      return { ok: false, error: err as Error };
    }
  }

  /** One statement under a savepoint of the open transaction: a failure undoes only it. */
  async underSavepoint(name: string, query: string | pg.QueryConfig): Promise<Attempt> {
    await this.statements.prepareNew();
    await this.db.query(`savepoint ${name}`);
    try {
      const result = await this.db.query(query);
      await this.db.query(`release savepoint ${name}`);
      return { ok: true, result };
    } catch (err) {
      if (sqlstateOf(err) === undefined) throw err;
      await this.db.query(`rollback to savepoint ${name}; release savepoint ${name}`);
      return { ok: false, error: err as Error };
    }
  }

  /**
   * Runs a statement that cannot run in a transaction block (CREATE INDEX CONCURRENTLY) on its
   * own; the caller has no local transaction open.
   */
  async outsideTransaction(statement: string): Promise<Attempt> {
    try {
      return { ok: true, result: await this.db.query(statement) };
    } catch (err) {
      if (sqlstateOf(err) === undefined) throw err;
      return { ok: false, error: err as Error };
    }
  }

  /**
   * Catalog reads and Brabant's own upkeep (triggers, resolutions) in the open transaction,
   * after the statements prepared so far.
   */
  async maintain<T>(fn: (db: Pick<pg.Client, 'query'>) => Promise<T>): Promise<T> {
    await this.statements.prepareNew();
    return fn(this.db);
  }

  /** Abandons the open local transaction. */
  async rollback(): Promise<void> {
    await this.db.query('rollback').catch(() => {});
  }
}

/**
 * A named statement of the extended protocol (node-postgres prepares it once per connection):
 * for writes run one at a time, under savepoints.
 */
export function namedQuery(text: string, values: unknown[]): pg.QueryConfig {
  return { name: `brabant_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`, text, values };
}
