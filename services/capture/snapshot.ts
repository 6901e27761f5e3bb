/**
 * A consistent snapshot of a running node for a node that joins (I/O; the join's steps are in
 * services/control/membership/join.ts):
 *
 * 1. **The fence.** Every transaction apply commits under a replication origin first reads
 *    brabant.join_fence FOR UPDATE (apply/planner/script.ts, XACT_SETUP). Locking it EXCLUSIVE waits
 *    for the apply transactions in flight and holds new ones at their first statement, before
 *    they have a transaction id, for as long as the next two steps take.
 * 2. **The slot.** A temporary logical slot created on a replication connection exports its
 *    snapshot: every transaction of this node that committed before the slot's consistent point
 *    is in it, none after (a transaction whose commit record starts at the consistent point or
 *    later is not). Temporary: it goes when the connection closes, so a join that dies leaves
 *    nothing holding WAL on the peer.
 * 3. **The origins' progress** read while the fence holds is exactly the progress the snapshot
 *    holds: no origin can move between the slot and the read.
 *
 * Then the fence goes (apply held for the time a slot takes to create: it waits for the
 * transactions running on the node). Readers of the snapshot open their own connections and take
 * it with SET TRANSACTION SNAPSHOT while the slot's connection stays open. Every row is read with
 * its version: `pg_xact_commit_timestamp_origin(xmin)`, the commit time and origin of the
 * transaction that wrote it.
 */
import pg from 'pg';
import { formatLsn, type Lsn, parseLsn } from '../protocol/lsn.ts';
import { nodeOfOrigin } from '../protocol/names.ts';
import { BrabantError } from '../runtime/errors.ts';
import { endWithin } from '../runtime/pg-client.ts';
import { SQLSTATE, sqlstateOf } from '../runtime/sqlstate.ts';
import { quoteIdent } from './catalog.ts';
import { REPLICATION_SESSION_OPTIONS } from './stream.ts';

export interface NodeSnapshot {
  /** The snapshot's name, for SET TRANSACTION SNAPSHOT (valid while this is open). */
  name: string;
  /** The slot's consistent point: the node's own transactions before it are in the snapshot. */
  consistentPoint: Lsn;
  /** Per source node, the last of its commits applied on this node as of the snapshot. */
  applied: Map<string, Lsn>;
  /** How long apply on the node was held by the fence. */
  fencedMs: number;
  close(): Promise<void>;
}

/** How long one attempt to lock the fence may wait (apply may be inside a large transaction). */
const FENCE_WAIT = '10s';

/**
 * Takes the snapshot (see the module comment). `slot` names the temporary slot. Fails with
 * TIMEOUT after `attempts` tries to take the fence (a large source transaction applied on the node
 * holds it meanwhile), saying so.
 */
export async function takeSnapshot(
  url: string,
  slot: string,
  o: { attempts?: number; onWait?: (why: string) => void } = {},
): Promise<NodeSnapshot> {
  const fence = new pg.Client({ connectionString: url, application_name: `brabant-join-fence-${slot}` });
  const repl = new pg.Client({
    connectionString: url,
    replication: 'database',
    options: REPLICATION_SESSION_OPTIONS,
    application_name: `brabant-join-${slot}`,
  } as pg.ClientConfig);
  fence.on('error', () => {});
  repl.on('error', () => {});
  try {
    await fence.connect();
    await repl.connect();
    const has = await fence.query(`select to_regclass('brabant.join_fence') is not null as ok`);
    if (!has.rows[0]?.ok)
      throw new BrabantError(
        'CONFIG_INVALID',
        'the peer has no brabant.join_fence: its apply is of a build before joins (or never ran); upgrade and start its apply first',
      );
    for (let attempt = 1; ; attempt++) {
      await fence.query('begin');
      try {
        await fence.query(`set local lock_timeout = '${FENCE_WAIT}'`);
        // EXCLUSIVE: conflicts with apply's ROW SHARE and assigns no xid (ACCESS EXCLUSIVE would,
        // and the slot below waits for every transaction with one)
        await fence.query('lock table brabant.join_fence in exclusive mode');
        break;
      } catch (err) {
        await fence.query('rollback');
        if (sqlstateOf(err) !== SQLSTATE.LOCK_NOT_AVAILABLE) throw err;
        if (attempt >= (o.attempts ?? 30))
          throw new BrabantError(
            'TIMEOUT',
            `the peer's apply kept a transaction open for ${attempt} × ${FENCE_WAIT} (a large source transaction): try the join again when it is applied`,
          );
        o.onWait?.(
          `the peer's apply is inside a long transaction; waiting to take the snapshot (try ${attempt})`,
        );
      }
    }
    const fenced = Date.now();
    const taken = await (async () => {
      try {
        const res = await repl.query<{ consistent_point: string; snapshot_name: string }>(
          `CREATE_REPLICATION_SLOT "${slot}" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')`,
        );
        const progress = await fence.query<{ roname: string; p: string | null }>(
          `select o.roname, s.remote_lsn::text as p from pg_replication_origin o
             left join pg_replication_origin_status s on s.local_id = o.roident`,
        );
        return { created: res.rows[0]!, progress: progress.rows };
      } finally {
        await fence.query('commit').catch(() => {});
      }
    })();
    const fencedMs = Date.now() - fenced;
    const { created } = taken;
    const applied = new Map<string, Lsn>();
    for (const r of taken.progress) {
      const node = nodeOfOrigin(r.roname);
      if (node !== undefined && r.p !== null) applied.set(node, parseLsn(r.p));
    }
    await endWithin(fence);
    return {
      name: created.snapshot_name,
      consistentPoint: parseLsn(created.consistent_point),
      applied,
      fencedMs,
      close: () => endWithin(repl),
    };
  } catch (err) {
    await endWithin(fence);
    await endWithin(repl);
    throw err;
  }
}

/** A table as the snapshot reader lists it. */
export interface SnapshotTable {
  schema: string;
  name: string;
  /** The planner's estimate of its rows (for progress). */
  estimatedRows: number;
}

/** One row of a table with the version of the transaction that wrote it. */
export interface VersionedRow {
  /** Commit time in unix microseconds, or null when unknown (frozen or older than the commit-time data). */
  ts: bigint | null;
  /** The node whose transaction wrote it (this node when the transaction had no origin). */
  node: string;
  /** The row's text form (a composite literal of the table's row type). */
  row: string;
}

/**
 * A connection inside the snapshot: lists the tables and reads their rows with their versions,
 * in batches, through a cursor.
 */
export class SnapshotReader {
  private readonly db: pg.Client;
  private origins = new Map<number, string>();

  constructor(
    url: string,
    private readonly snapshot: string,
    /** Id of the node read: what a row without origin was written by. */
    private readonly nodeId: string,
  ) {
    this.db = new pg.Client({ connectionString: url, application_name: 'brabant-join-copy' });
    this.db.on('error', () => {});
  }

  async open(): Promise<void> {
    await this.db.connect();
    await this.db.query('begin isolation level repeatable read read only');
    await this.db.query(`set transaction snapshot '${this.snapshot}'`);
    await this.db.query(`set local timezone = 'UTC'`);
    const res = await this.db.query<{ id: number; name: string }>(
      'select roident::int as id, roname as name from pg_replication_origin',
    );
    this.origins = new Map(res.rows.map((r) => [r.id, nodeOfOrigin(r.name) ?? r.name]));
  }

  /**
   * The tables whose rows the joining node gets: every permanent user table with storage (a
   * partitioned table's rows are its partitions'), and Brabant's own state that travels with the
   * rows (tombstones, per-column versions, conflict policies).
   */
  async tables(): Promise<SnapshotTable[]> {
    const res = await this.db.query<{ schema: string; name: string; est: string }>(
      `select n.nspname as schema, c.relname as name, greatest(c.reltuples, 0)::int8::text as est
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'r' and c.relpersistence = 'p'
          and ((n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%')
               or (n.nspname = 'brabant' and c.relname in ('tombstones', 'column_versions', 'row_versions', 'policies', 'parted_nodes')))
        order by n.nspname = 'brabant', c.reltuples desc, 1, 2`,
    );
    const out: SnapshotTable[] = [];
    for (const r of res.rows) {
      let estimatedRows = Number(r.est);
      if (estimatedRows === 0) {
        // never analyzed: the planner's own estimate (from the table's size)
        const plan = await this.db.query<{ 'QUERY PLAN': { Plan: { 'Plan Rows': number } }[] }>(
          `explain (format json) select from only ${quoteIdent(r.schema)}.${quoteIdent(r.name)}`,
        );
        estimatedRows = plan.rows[0]?.['QUERY PLAN'][0]?.Plan['Plan Rows'] ?? 0;
      }
      out.push({ schema: r.schema, name: r.name, estimatedRows });
    }
    return out;
  }

  /** The source nodes the node's database applies (brabant.peers): its origins that belong to it. */
  async peers(): Promise<string[]> {
    const res = await this.db.query<{ node: string }>('select node from brabant.peers');
    return res.rows.map((r) => r.node);
  }

  /** The rows of a table, `batch` at a time, each with its version. */
  async *rows(t: SnapshotTable, batch: number): AsyncGenerator<VersionedRow[]> {
    const q = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
    await this.db.query(
      `declare brabant_copy no scroll cursor for
         select (extract(epoch from v.timestamp) * 1000000)::int8::text as ts, v.roident::int as origin, r::text as row
           from only ${q} r left join lateral pg_xact_commit_timestamp_origin(r.xmin) v on true`,
    );
    try {
      for (;;) {
        const res = await this.db.query<{ ts: string | null; origin: number | null; row: string }>(
          `fetch ${batch} from brabant_copy`,
        );
        if (res.rows.length === 0) return;
        yield res.rows.map((r) => ({
          ts: r.ts === null ? null : BigInt(r.ts),
          node:
            r.origin === null || r.origin === 0 ? this.nodeId : (this.origins.get(r.origin) ?? this.nodeId),
          row: r.row,
        }));
      }
    } finally {
      await this.db.query('close brabant_copy').catch(() => {});
    }
  }

  async close(): Promise<void> {
    await this.db.query('commit').catch(() => {});
    await endWithin(this.db);
  }
}

/** For messages: the snapshot's position. */
export function describeSnapshot(s: NodeSnapshot): string {
  return `consistent point ${formatLsn(s.consistentPoint)}, ${s.applied.size} origin(s)`;
}
