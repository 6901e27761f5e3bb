/**
 * Writes the initial copy of a joining node (I/O shell of planner/copy.ts): one connection per
 * origin node found among the rows, each holding that node's replication origin
 * (`brabant_<node>`, as apply's own sessions do, with session_replication_role = replica so no
 * trigger fires and no foreign key is checked while tables fill in any order), running the copy
 * scripts of its rows; the origins run in parallel. At the end the sessions let go of their
 * origins and each origin's progress is set to where the joining node's streams start.
 */
import pg from 'pg';
import { formatLsn, type Lsn } from '../protocol/lsn.ts';
import { originName } from '../protocol/names.ts';
import { endWithin } from '../runtime/pg-client.ts';
import { takeOrigin } from './executor/origin-session.ts';
import { APPLY_SESSION_OPTIONS } from './origin-applier.ts';
import { COPY_SETUP, type CopyRow, copyInsert, planCopy } from './planner/copy.ts';

/** A table of the joining node, ready for rows. */
export interface CopyTable {
  /** Schema-qualified, quoted. */
  sql: string;
  statement: string;
  prepare: string;
}

interface OriginConnection {
  db: pg.Client;
  prepared: Set<string>;
}

const LIMITS = { maxTransactions: 1000, maxBytes: 4 * 1024 * 1024 };

export class CopyWriter {
  private readonly connections = new Map<string, Promise<OriginConnection>>();
  private readonly catalog: pg.Client;
  private tables = 0;

  constructor(
    private readonly url: string,
    /** The joining node's id (the origin sessions' owner, for messages). */
    private readonly nodeId: string,
  ) {
    this.catalog = new pg.Client({ connectionString: url, application_name: 'brabant-join-catalog' });
    this.catalog.on('error', () => {});
  }

  async open(): Promise<void> {
    await this.catalog.connect();
  }

  /** The table `schema.name` of the joining node: its columns that take values, in order. */
  async table(schema: string, name: string): Promise<CopyTable> {
    const res = await this.catalog.query<{ q: string; cols: string[]; always: boolean }>(
      `select format('%I.%I', n.nspname, c.relname) as q,
              array_agg(quote_ident(a.attname) order by a.attnum) filter (where a.attgenerated = '') as cols,
              bool_or(a.attidentity = 'a') as always
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
         join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = $1 and c.relname = $2
        group by 1`,
      [schema, name],
    );
    const r = res.rows[0];
    if (r === undefined)
      throw new Error(`table ${schema}.${name} is missing on ${this.nodeId} after the schema copy`);
    const statement = `brabant_copy_t${this.tables++}`;
    return { sql: r.q, statement, prepare: copyInsert(statement, r.q, r.cols, r.always) };
  }

  /** Writes a batch of rows; resolves once every origin's share committed. */
  async write(t: CopyTable, rows: CopyRow[]): Promise<{ transactions: number }> {
    const scripts = planCopy(rows, t.statement, LIMITS);
    const byNode = new Map<string, string[]>();
    for (const s of scripts) byNode.set(s.node, [...(byNode.get(s.node) ?? []), s.sql]);
    await Promise.all(
      [...byNode].map(async ([node, sqls]) => {
        const c = await this.connection(node);
        if (!c.prepared.has(t.statement)) {
          await c.db.query(t.prepare);
          c.prepared.add(t.statement);
        }
        for (const sql of sqls) await c.db.query(sql);
      }),
    );
    return { transactions: scripts.reduce((n, s) => n + s.transactions, 0) };
  }

  /**
   * Lets go of the origins and sets each origin's progress (source node → last commit LSN of it
   * the copy holds); an origin not listed keeps what it has.
   */
  async finish(progress: Map<string, Lsn>): Promise<void> {
    for (const c of this.connections.values()) {
      const { db } = await c;
      await db.query('select pg_replication_origin_session_reset()');
    }
    for (const [node, lsn] of progress) {
      const origin = originName(node);
      await this.catalog.query(
        'select pg_replication_origin_create($1) where not exists (select 1 from pg_replication_origin where roname = $1)',
        [origin],
      );
      await this.catalog.query('select pg_replication_origin_advance($1, $2::pg_lsn)', [
        origin,
        formatLsn(lsn),
      ]);
    }
  }

  async close(): Promise<void> {
    for (const c of this.connections.values()) {
      const open = await c.catch(() => undefined);
      if (open !== undefined) await endWithin(open.db);
    }
    await endWithin(this.catalog);
  }

  private connection(node: string): Promise<OriginConnection> {
    let c = this.connections.get(node);
    if (c === undefined) {
      c = (async () => {
        const db = new pg.Client({
          connectionString: this.url,
          options: APPLY_SESSION_OPTIONS,
          application_name: `brabant-join-copy-${node}`,
        });
        db.on('error', () => {});
        await db.connect();
        await takeOrigin(db, originName(node), this.nodeId);
        await db.query(COPY_SETUP.sql);
        return { db, prepared: new Set<string>() };
      })();
      this.connections.set(node, c);
    }
    return c;
  }
}
