/**
 * The grouped fast path of apply against a real node, without Kafka: many small source
 * transactions in one round trip, each still its own local transaction with its original commit
 * time and origin; and, on random histories full of conflicts, exactly the same end state and
 * conflict log as the row-by-row path (the fast path must never decide a conflict itself).
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { applyMetrics } from '../services/apply/metrics.ts';
import { APPLY_SESSION_OPTIONS, OriginApplier, type TxOutcome } from '../services/apply/origin-applier.ts';
import { verifySql } from '../services/apply/planner/sql-rows.ts';
import { TargetCatalog } from '../services/apply/target-catalog.ts';
import type { DecodedChange, RowChange } from '../services/protocol/change-decoder.ts';
import { lsn, parseLsn } from '../services/protocol/lsn.ts';
import { ensureDeleteTriggers, ensureNodeObjects } from '../services/protocol/node-schema.ts';
import { createLogger } from '../services/runtime/log.ts';
import { seeded } from './support/random.ts';
import { createDatabase, node, uniqueName } from './support/stack.ts';

const open = new Set<Target>();
afterEach(async () => {
  for (const t of open) await t.close();
});

const SCHEMA = 'create table items (id int primary key, v text, n int)';
const BASE_TS = 1_600_000_000_000_000n; // 2020-09-13: older than any local write of the test
const FUTURE_TS = 4_100_000_000_000_000n; // 2099: newer than any local write of the test

interface Target {
  client: pg.Client;
  url: string;
  /**
   * Runs `fn` (a local write) between the next resolve-ahead lookup and the transactions resting
   * on it; resolves with whether that script of transactions then stopped at a statement.
   */
  betweenLookupAndWrite: (fn: () => Promise<void>) => Promise<boolean>;
  applier: (source: string, group: number) => Promise<OriginApplier>;
  queries: () => number;
  metrics: ReturnType<typeof applyMetrics>;
  /** Ends the connections, drops the database and the replication origins (they are per server). */
  close: () => Promise<void>;
}

async function target(): Promise<Target> {
  const db = await createDatabase(node('vl-1'), 'fast');
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const connections: pg.Client[] = [];
  const origins: string[] = [];
  await admin.query(SCHEMA);
  await ensureNodeObjects(admin);
  await ensureDeleteTriggers(admin);
  const catalog = new TargetCatalog(admin);
  const log = createLogger('test', 'silent');
  const metrics = applyMetrics();
  let count = 0;
  let between: (() => Promise<void>) | undefined;
  let armed = false;
  let afterHooked: ((stopped: boolean) => void) | undefined;
  let scriptPending = false;
  const t: Target = {
    client: admin,
    url: db.url,
    queries: () => count,
    metrics,
    betweenLookupAndWrite: (fn) => {
      between = fn;
      return new Promise((res) => {
        afterHooked = res;
      });
    },
    applier: async (source, group) => {
      const c = new pg.Client({ connectionString: db.url, options: APPLY_SESSION_OPTIONS });
      await c.connect();
      connections.push(c);
      const query = c.query.bind(c) as (...args: unknown[]) => unknown;
      (c as unknown as { query: (...args: unknown[]) => unknown }).query = async (...args: unknown[]) => {
        count++;
        const sql = typeof args[0] === 'string' ? args[0] : '';
        // resolve ahead: the lookups (in a transaction rolled back), then the script of transactions
        // (statements it needs prepared first, one query each)
        const prepare = sql.startsWith('prepare ');
        if (sql.endsWith('rollback') && !sql.includes('commit')) armed = between !== undefined;
        else if (armed && (prepare || sql.includes('commit'))) {
          armed = false;
          const fn = between!;
          between = undefined;
          await fn();
          scriptPending = true;
        }
        if (scriptPending && !prepare) {
          // the script: it stopped at a statement if it failed (the rest did not run)
          scriptPending = false;
          const answer = query(...args) as Promise<unknown>;
          answer.then(
            () => afterHooked?.(false),
            () => afterHooked?.(true),
          );
          return answer;
        }
        return query(...args);
      };
      const a = new OriginApplier(c, source, {
        localNode: 'vl-local',
        catalog,
        log,
        metrics,
        chunkRows: 2000,
        groupTransactions: group,
      });
      await a.init();
      origins.push(a.origin);
      return a;
    },
    close: async () => {
      open.delete(t);
      for (const c of connections) await c.end();
      for (const o of origins) await admin.query('select pg_replication_origin_drop($1)', [o]);
      await admin.end();
      await db.drop();
    },
  };
  open.add(t);
  return t;
}

type Op = { op: 'INSERT' | 'UPDATE' | 'DELETE'; id: number; v?: string; n?: number };

/** A source's transactions as the decoder hands them to apply. */
class Source {
  private lsn = 0x1000000n;
  private xid = 1000n;
  constructor(
    readonly node: string,
    private ts: bigint,
  ) {}

  /** Moves the source's clock (its next commits are later in LSN, at this time). */
  at(ts: bigint): this {
    this.ts = ts;
    return this;
  }

  tx(ops: Op[], tsStep = 1000n): DecodedChange[] {
    this.lsn += 0x100n;
    this.xid += 1n;
    this.ts += tsStep;
    const tx = { xid: this.xid, commitLsn: lsn(this.lsn), commitTs: this.ts };
    if (ops.length === 0) {
      return [
        {
          kind: 'control',
          origin: { region: 'r', node: this.node },
          tx: { ...tx, index: 0, last: true },
          control: 'HEARTBEAT',
          prefix: 'brabant',
          content: Buffer.alloc(0),
        },
      ];
    }
    return ops.map(
      (o, index): RowChange => ({
        kind: 'row',
        origin: { region: 'r', node: this.node },
        tx: { ...tx, index, last: index === ops.length - 1 },
        op: o.op,
        schema: 'public',
        table: 'items',
        key: { id: String(o.id) },
        before: null,
        after:
          o.op === 'DELETE'
            ? null
            : { id: String(o.id), v: o.v ?? null, n: o.n === undefined ? null : String(o.n) },
      }),
    );
  }
}

async function state(c: pg.Client) {
  const rows = await c.query<{ id: number; v: string; n: number; ts: string | null; roname: string | null }>(
    `select i.id, i.v, i.n, (extract(epoch from (pg_xact_commit_timestamp_origin(i.xmin)).timestamp) * 1000000)::int8::text as ts, o.roname
       from items i left join pg_replication_origin o on o.roident = (pg_xact_commit_timestamp_origin(i.xmin)).roident
      order by i.id`,
  );
  const tombs = await c.query<{ key: string; ts: string | null; roname: string | null }>(
    `select t.key::text, (extract(epoch from (pg_xact_commit_timestamp_origin(t.xmin)).timestamp) * 1000000)::int8::text as ts, o.roname
       from brabant.tombstones t left join pg_replication_origin o on o.roident = (pg_xact_commit_timestamp_origin(t.xmin)).roident
      order by 1`,
  );
  const conflicts = await c.query(
    `select kind, resolution, key::text, remote_node, remote_commit_ts::text from brabant.conflicts
      order by remote_commit_ts, remote_node, kind, key::text`,
  );
  // local writes commit at the wall-clock time of each run: compare only that they are local
  const stable = <R extends { ts: string | null; roname: string | null }>(r: R): R =>
    r.roname === null ? { ...r, ts: 'local' } : r;
  return { rows: rows.rows.map(stable), tombstones: tombs.rows.map(stable), conflicts: conflicts.rows };
}

describe('apply fast path', () => {
  it('applies many one-row source transactions in one round trip, each with its own commit time and origin', async () => {
    const t = await target();
    const name = uniqueName('src');
    const applier = await t.applier(name, 500);
    const src = new Source(name, BASE_TS);
    const inserts = Array.from({ length: 300 }, (_, i) =>
      src.tx([{ op: 'INSERT', id: i + 1, v: `v${i}`, n: i }]),
    );
    const updates = Array.from({ length: 100 }, (_, i) =>
      src.tx([{ op: 'UPDATE', id: i + 1, v: `it's \\ "quoted" ${i}`, n: -i }]),
    );
    const deletes = Array.from({ length: 50 }, (_, i) => src.tx([{ op: 'DELETE', id: 300 - i }]));
    const idle = src.tx([]);
    const before = t.queries();
    const outcomes: TxOutcome[] = await applier.handleMany([...inserts, ...updates, ...deletes, idle].flat());
    // 451 source transactions: one round trip, after preparing the four statement shapes once
    expect(t.queries() - before).toBe(5);
    expect(outcomes).toHaveLength(451);
    expect(outcomes.every((o) => o.conflicts.length === 0)).toBe(true);
    expect(applier.progress).toBe(idle[0]!.tx.commitLsn);

    const s = await state(t.client);
    expect(s.rows).toHaveLength(250);
    expect(s.tombstones).toHaveLength(50);
    expect(s.conflicts).toEqual([]);
    const first = s.rows[0]!;
    expect(first).toMatchObject({ id: 1, v: `it's \\ "quoted" 0`, n: 0, roname: `brabant_${name}` });
    // every row carries the commit time of the source transaction that wrote it last
    expect(first.ts).toBe(String(updates[0]![0]!.tx.commitTs));
    expect(s.rows.find((r) => r.id === 200)!.ts).toBe(String(inserts[199]![0]!.tx.commitTs));
    expect(s.tombstones[0]).toMatchObject({ roname: `brabant_${name}` });
    // the same shapes again: now one round trip for all of them
    const more = Array.from({ length: 200 }, (_, i) =>
      src.tx([{ op: 'INSERT', id: 1000 + i, v: 'new', n: i }]),
    );
    const again = t.queries();
    expect(await applier.handleMany(more.flat())).toHaveLength(200);
    expect(t.queries() - again).toBe(1);
    const progress = await t.client.query<{ p: string }>(
      `select pg_replication_origin_progress($1, true)::text as p`,
      [`brabant_${name}`],
    );
    expect(parseLsn(progress.rows[0]!.p)).toBe(more[more.length - 1]![0]!.tx.commitLsn);
  });

  it('takes a transaction that needs conflict resolution through the full path and goes on grouping after it', async () => {
    const { t, applier, src } = await withRows(10, 'a');
    // a local write on key 5 makes the source's next update of it an update_origin_change
    await t.client.query(`update items set v = 'local' where id = 5`);
    const txs = [
      ...Array.from({ length: 4 }, (_, i) => src.tx([{ op: 'UPDATE', id: i + 1, v: 'b' }])),
      src.tx([{ op: 'UPDATE', id: 5, v: 'b' }]),
      ...Array.from({ length: 5 }, (_, i) => src.tx([{ op: 'UPDATE', id: i + 6, v: 'b' }])),
    ];
    const before = t.queries();
    const outcomes = await applier.handleMany(txs.flat());
    expect(outcomes).toHaveLength(10);
    expect(outcomes[4]!.conflicts.map((c) => c.kind)).toEqual(['update_origin_change']);
    // group (4 committed, miss), rollback, progress, the missed one's few statements, group of 5
    expect(t.queries() - before).toBeLessThanOrEqual(10);
    const s = await state(t.client);
    // the local write (now) is newer than the source's change (2020): it stays
    expect(s.rows.map((r) => r.v)).toEqual(['b', 'b', 'b', 'b', 'local', 'b', 'b', 'b', 'b', 'b']);
    expect(s.conflicts).toHaveLength(1);
  });

  it('resolves conflicting transactions ahead in two round trips, and takes the full path when a local write lands in between', async () => {
    const { t, applier, src: older } = await withRows(20, 'remote');
    const name = applier.source;
    // local writes (now) on every key: the source's next (2020) updates lose to them
    await t.client.query(`update items set v = 'local'`);
    let before = t.queries();
    const lost = await applier.handleMany(
      Array.from({ length: 20 }, (_, i) => older.tx([{ op: 'UPDATE', id: i + 1, v: 'late' }])).flat(),
    );
    expect(lost.map((o) => o.conflicts.map((c) => `${c.kind}/${c.resolution}`))).toEqual(
      Array.from({ length: 20 }, () => ['update_origin_change/keep_local']),
    );
    // fast attempt (missed), rollback, lookup, transactions, and the statements prepared once
    expect(t.queries() - before).toBeLessThanOrEqual(10);
    // changes from 2099 win over the local rows; one local write lands between the lookup and them
    const newer = older.at(FUTURE_TS);
    const stopped = t.betweenLookupAndWrite(async () => {
      await t.client.query(`update items set n = 42 where id = 3`);
    });
    before = t.queries();
    const missesBefore = t.metrics.fastPathMisses.get({ origin: name });
    const won = await applier.handleMany(
      Array.from({ length: 10 }, (_, i) => newer.tx([{ op: 'UPDATE', id: i + 1, v: 'future' }])).flat(),
    );
    expect(won.map((o) => o.conflicts.map((c) => `${c.kind}/${c.resolution}`))).toEqual(
      Array.from({ length: 10 }, () => ['update_origin_change/apply_remote']),
    );
    // the check inside the transaction of key 3 saw the local write (a miss), and the full path
    // resolved it again against the row the local write left
    expect(await stopped).toBe(true);
    expect(t.metrics.fastPathMisses.get({ origin: name })).toBeGreaterThan(missesBefore);
    expect(won[2]!.conflicts[0]!.localRow).toMatchObject({ id: 3, n: 42 });
    expect(t.queries() - before).toBeLessThanOrEqual(20);
    const s = await state(t.client);
    expect(s.rows.map((r) => r.v)).toEqual([...Array(10).fill('future'), ...Array(10).fill('local')]);
    expect(s.conflicts).toHaveLength(30);
  });

  it('keeps a resolve-ahead decision to keep the local row when a newer local write lands in between', async () => {
    const { t, applier, src: older } = await withRows(10, 'remote');
    const name = applier.source;
    // local writes (now) on every key: the source's next (2020) updates lose to them
    await t.client.query(`update items set v = 'local'`);
    // and one more local write of key 3 between the lookup and the transactions resting on it
    const stopped = t.betweenLookupAndWrite(async () => {
      await t.client.query(`update items set n = 42 where id = 3`);
    });
    const fullBefore = t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' });
    const lost = await applier.handleMany(
      Array.from({ length: 10 }, (_, i) => older.tx([{ op: 'UPDATE', id: i + 1, v: 'late', n: 7 }])).flat(),
    );
    expect(lost.map((o) => o.conflicts.map((c) => `${c.kind}/${c.resolution}`))).toEqual(
      Array.from({ length: 10 }, () => ['update_origin_change/keep_local']),
    );
    // the check let it through: the row is newer still, so keeping it holds
    expect(await stopped).toBe(false);
    expect(t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' })).toBe(fullBefore);
    const s = await state(t.client);
    expect(s.rows.map((r) => r.v)).toEqual(Array(10).fill('local'));
    expect(s.rows.find((r) => r.id === 3)!.n).toBe(42);
    await t.close();
  });

  it('resolves ahead transactions that also insert into a table without a key, each row once', async () => {
    const { t, applier, src: older } = await withRows(6, 'remote');
    const name = applier.source;
    await t.client.query('create table history (item int, note text)'); // no key, like pgbench_history
    await t.client.query(`update items set v = 'local'`);
    // like TPC-B: an update that loses to the local row, and an insert into the table without a key
    const txs = Array.from({ length: 6 }, (_, i) => {
      const [u] = older.tx([{ op: 'UPDATE', id: i + 1, v: 'late' }]) as RowChange[];
      const insert: RowChange = {
        ...u!,
        op: 'INSERT',
        table: 'history',
        key: {},
        after: { item: String(i + 1), note: 'remote' },
        tx: { ...u!.tx, index: 1, last: true },
      };
      return [{ ...u!, tx: { ...u!.tx, last: false } }, insert];
    }).flat();
    const fullBefore = t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' });
    const outcomes = await applier.handleMany(txs);
    expect(outcomes).toHaveLength(6);
    expect(t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' })).toBe(fullBefore);
    expect(t.metrics.strategyTransactions.get({ origin: name, strategy: 'resolve-ahead' })).toBeGreaterThan(
      0,
    );
    const h = await t.client.query<{ item: number }>('select item from history order by item');
    expect(h.rows.map((r) => r.item)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await state(t.client)).rows.map((r) => r.v)).toEqual(Array(6).fill('local'));
    // applied again (a redelivery): nothing doubles
    await applier.handleMany(txs);
    expect((await t.client.query('select count(*)::int as n from history')).rows[0].n).toBe(6);
    await t.close();
  });

  it('resolves ahead transactions that update the same hot rows one after another, in one group, as the row-by-row path does', async () => {
    const { t, applier, src: older } = await withRows(3, 'remote');
    const name = applier.source;
    // local writes (now) on every key: the source's next updates from 2099 win over them
    await t.client.query(`update items set v = 'local'`);
    const newer = older.at(FUTURE_TS);
    // like TPC-B: every transaction updates one of few hot rows (branches) and a row of its own
    const txs = hotRowUpdates(newer, 30, { hot: 3, v: 'step', firstNewId: 100 });
    const fullBefore = t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' });
    const outcomes = await applier.handleMany(txs);
    expect(outcomes).toHaveLength(30);
    // the first update of each hot row beats the local write; the later ones follow it, no conflict
    expect(outcomes.map((o) => o.conflicts.map((c) => `${c.kind}/${c.resolution}`))).toEqual(
      Array.from({ length: 30 }, (_, i) => (i < 3 ? ['update_origin_change/apply_remote'] : [])),
    );
    expect(t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' })).toBe(fullBefore);
    const s = await state(t.client);
    const last = (id: number) => 27 + id - 1; // the last transaction of each hot row
    for (const id of [1, 2, 3]) {
      const row = s.rows.find((r) => r.id === id)!;
      expect(row).toMatchObject({ v: `step ${last(id)}`, n: last(id), roname: applier.origin });
      // its version is the commit time of the source transaction that wrote it last
      expect(BigInt(row.ts!)).toBe(FUTURE_TS + 1000n * BigInt(last(id) + 1));
    }
    expect(s.rows.filter((r) => r.v === 'new')).toHaveLength(30);
    // a redelivery of them all changes nothing
    await applier.handleMany(txs);
    expect(await state(t.client)).toEqual(s);
    // local writers change the hot rows again, and 30 more such transactions come: one lookup and
    // one script of them all (each group ended at a repeated key before: a round trip per 3)
    await t.client.query(`update items set v = 'local' where id <= 3`);
    const before = t.queries();
    const more = await applier.handleMany(hotRowUpdates(newer, 30, { hot: 3, v: 'more', firstNewId: 200 }));
    console.log(`round trips of 30 transactions on 3 hot rows: ${t.queries() - before}`);
    expect(more).toHaveLength(30);
    expect(t.queries() - before).toBeLessThanOrEqual(4);
    expect((await state(t.client)).rows.slice(0, 3).map((r) => r.v)).toEqual([
      'more 27',
      'more 28',
      'more 29',
    ]);
    expect(t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' })).toBe(fullBefore);
    await t.close();
  });

  it('takes the full path when a local write lands on a hot row between the lookup and the transactions updating it one after another', async () => {
    const { t, applier, src: older } = await withRows(2, 'remote');
    const name = applier.source;
    // local writes on both rows: the source's next changes need resolving (from 2099, they win)
    await t.client.query(`update items set v = 'local'`);
    const newer = older.at(FUTURE_TS);
    const txs = Array.from({ length: 10 }, (_, i) =>
      newer.tx([{ op: 'UPDATE', id: 1 + (i % 2), v: `step ${i}` }]),
    ).flat();
    // one more local write of row 2 after the lookup: the check of its first update sees it
    const stopped = t.betweenLookupAndWrite(async () => {
      await t.client.query(`update items set n = 42 where id = 2`);
    });
    const missesBefore = t.metrics.fastPathMisses.get({ origin: name });
    const outcomes = await applier.handleMany(txs);
    expect(outcomes).toHaveLength(10);
    expect(await stopped).toBe(true);
    expect(t.metrics.fastPathMisses.get({ origin: name })).toBeGreaterThan(missesBefore);
    // the full path resolved row 2's first update against the row that local write left, and
    // every later update of both rows followed the one before it
    expect(outcomes.map((o) => o.conflicts.map((c) => `${c.kind}/${c.resolution}`))).toEqual([
      ['update_origin_change/apply_remote'],
      ['update_origin_change/apply_remote'],
      ...Array.from({ length: 8 }, () => []),
    ]);
    expect(outcomes[1]!.conflicts[0]!.localRow).toMatchObject({ id: 2, n: 42 });
    const s = await state(t.client);
    expect(s.rows.map((r) => `${r.v}|${r.roname === applier.origin}`)).toEqual([
      'step 8|true',
      'step 9|true',
    ]);
    await t.close();
  });

  it('checks a row an earlier transaction of the script wrote by its version: the same origin and commit time, not a later local write', async () => {
    const { t, applier } = await withRows(1, 'remote');
    const table = (await new TargetCatalog(t.client).table('public', 'items'))!;
    const verify = verifySql(table, ['id']);
    const version = async () =>
      (
        await t.client.query<{ ts: string }>(
          `select (extract(epoch from (pg_xact_commit_timestamp_origin(xmin)).timestamp) * 1000000)::int8::text as ts from items where id = 1`,
        )
      ).rows[0]!.ts;
    const check = (ts: string, origin: string) =>
      t.client.query(verify, [
        '{1}',
        'public.items',
        '{NULL}',
        '{NULL}',
        '{f}',
        '2000-01-01',
        `{${ts}}`,
        origin,
      ]);
    const ts = await version();
    await check(ts, applier.origin);
    await expect(check(ts, 'brabant_another_node')).rejects.toThrow(/0 of 1 rows in the expected state/);
    await expect(check(String(BigInt(ts) + 1n), applier.origin)).rejects.toThrow(/0 of 1 rows/);
    // a local write since: the row is no longer at that version
    await t.client.query(`update items set v = 'local' where id = 1`);
    await expect(check(ts, applier.origin)).rejects.toThrow(/0 of 1 rows/);
    await t.close();
  });

  it('applies a transaction in conflict over several tables in two round trips on the full path', async () => {
    const t = await target();
    for (const x of ['b', 'c'])
      await t.client.query(`create table items_${x} (id int primary key, v text, n int)`);
    await t.client.query(`insert into items select g, 'local', 0 from generate_series(1, 4) g`);
    for (const x of ['b', 'c'])
      await t.client.query(`insert into items_${x} select g, 'local', 0 from generate_series(1, 4) g`);
    const name = uniqueName('src');
    const applier = await t.applier(name, 1); // grouping off: every transaction takes the full path
    // one key of each table per source transaction, like pgbench's TPC-B (accounts, tellers, branches)
    let at = 0x2000000n;
    const tx = (id: number): DecodedChange[] => {
      at += 0x100n;
      const txPos = { xid: at, commitLsn: lsn(at), commitTs: FUTURE_TS + at };
      return ['items', 'items_b', 'items_c'].map(
        (table, index): RowChange => ({
          kind: 'row',
          origin: { region: 'r', node: name },
          tx: { ...txPos, index, last: index === 2 },
          op: 'UPDATE',
          schema: 'public',
          table,
          key: { id: String(id) },
          before: null,
          after: { id: String(id), v: 'remote', n: String(id) },
        }),
      );
    };
    await applier.handleMany(tx(1)); // prepares its statements
    const before = t.queries();
    const outcomes = await applier.handleMany([...tx(2), ...tx(3)]);
    // every row was written locally: each change is a conflict the newer source wins
    expect(outcomes.map((o) => o.conflicts.map((c) => c.kind))).toEqual([
      Array(3).fill('update_origin_change'),
      Array(3).fill('update_origin_change'),
    ]);
    // per transaction: begin and the three tables' lookups; the writes, conflict log and commit
    expect(t.queries() - before).toBe(4);
    expect(t.metrics.roundTrips.get({ origin: name })).toBeGreaterThanOrEqual(4);
    expect(t.metrics.strategyTransactions.get({ origin: name, strategy: 'full' })).toBe(3);
    for (const table of ['items', 'items_b', 'items_c']) {
      const r = await t.client.query(`select id, v from ${table} order by id`);
      expect(r.rows.map((x) => x.v)).toEqual(['remote', 'remote', 'remote', 'local']);
    }
    await t.close();
  });

  it('ends in the same state and conflict log as the row-by-row path on random histories', async () => {
    const { seed, rand } = seeded('fast-path equivalence', 'BRABANT_FAST_PATH_SEED');
    // the same history for both targets: two sources (one older and one newer than local
    // writes), transactions of 0–3 operations on 12 keys, local writes between batches
    type Step = { kind: 'batch'; source: 0 | 1; txs: Op[][] } | { kind: 'local'; sql: string };
    const steps: Step[] = [];
    for (let s = 0; s < 40; s++) {
      if (rand(4) === 0) {
        const id = rand(12) + 1;
        const sql = [
          `insert into items values (${id}, 'local', ${s}) on conflict (id) do update set v = 'local', n = ${s}`,
          `delete from items where id = ${id}`,
          `update items set n = ${s} where id = ${id}`,
        ][rand(3)]!;
        steps.push({ kind: 'local', sql });
        continue;
      }
      const txs: Op[][] = [];
      for (let k = rand(15) + 1; k > 0; k--) {
        const ops: Op[] = [];
        for (let o = rand(4); o > 0; o--) {
          const op = (['INSERT', 'UPDATE', 'DELETE'] as const)[rand(3)]!;
          ops.push({ op, id: rand(12) + 1, v: `s${s}`, n: rand(100) });
        }
        txs.push(ops);
      }
      steps.push({ kind: 'batch', source: rand(2) as 0 | 1, txs });
    }
    // the same source names in both runs (origins are per server: each run drops its own)
    const older = uniqueName('old');
    const newer = uniqueName('new');
    const run = async (group: number) => {
      const t = await target();
      const appliers = [await t.applier(older, group), await t.applier(newer, group)];
      const sources = [new Source(older, BASE_TS), new Source(newer, FUTURE_TS)];
      let conflicts = 0;
      for (const step of steps) {
        if (step.kind === 'local') {
          await t.client.query(step.sql);
          continue;
        }
        const changes = step.txs.flatMap((ops) => sources[step.source]!.tx(ops));
        const outcomes = await appliers[step.source]!.handleMany(changes);
        expect(outcomes).toHaveLength(step.txs.length);
        conflicts += outcomes.reduce((a, o) => a + o.conflicts.length, 0);
      }
      const result = { ...(await state(t.client)), conflictCount: conflicts, queries: t.queries() };
      await t.close();
      return result;
    };
    const slow = await run(1);
    const fast = await run(500);
    expect(fast.rows).toEqual(slow.rows);
    expect(fast.tombstones).toEqual(slow.tombstones);
    expect(fast.conflicts).toEqual(slow.conflicts);
    expect(fast.conflictCount).toBe(slow.conflictCount);
    expect(slow.conflictCount).toBeGreaterThan(0);
    console.log(
      `seed ${seed}: ${slow.conflictCount} conflicts; round trips row by row ${slow.queries}, grouped ${fast.queries}`,
    );
  });
});

/** A target with `n` rows (ids 1–n, column v = `v`) written by a source that is 2020 in time. */
async function withRows(n: number, v: string) {
  const t = await target();
  const name = uniqueName('src');
  const applier = await t.applier(name, 500);
  const src = new Source(name, BASE_TS);
  await applier.handleMany(
    Array.from({ length: n }, (_, i) => src.tx([{ op: 'INSERT', id: i + 1, v }])).flat(),
  );
  return { t, applier, src };
}

/**
 * `n` source transactions like TPC-B's: transaction i updates hot row 1 + i % `hot` (v `${v} i`,
 * n i) and inserts a row of its own (v 'new', from `firstNewId` on).
 */
function hotRowUpdates(
  src: Source,
  n: number,
  o: { hot: number; v: string; firstNewId: number },
): DecodedChange[] {
  return Array.from({ length: n }, (_, i) =>
    src.tx([
      { op: 'UPDATE', id: 1 + (i % o.hot), v: `${o.v} ${i}`, n: i },
      { op: 'INSERT', id: o.firstNewId + i, v: 'new' },
    ]),
  ).flat();
}

/** `n` source transactions as the demo writes them: a new row (v 'new') and an update of a hot row. */
function newRowAndHotUpdate(src: Source, round: number, n: number): DecodedChange[] {
  return Array.from({ length: n }, (_, i) =>
    src.tx([
      { op: 'INSERT', id: 1000 + round * 100 + i, v: 'new' },
      { op: 'UPDATE', id: 1 + (i % 5), v: `remote ${round}` },
    ]),
  ).flat();
}

describe('apply fast path, mixed transactions', () => {
  it('keeps every new row of transactions that also update a row in conflict', async () => {
    const { t, applier, src } = await withRows(5, 'hot');
    for (let round = 0; round < 4; round++) {
      await t.client.query(`update items set v = 'local ${round}' where id <= 5`);
      const outcomes = await applier.handleMany(newRowAndHotUpdate(src, round, 30));
      expect(outcomes).toHaveLength(30);
    }
    const s = await state(t.client);
    expect(s.rows.filter((r) => r.v === 'new')).toHaveLength(120);
  });

  it('keeps every new row while local writers update the same hot rows at the same time', async () => {
    const { t, applier, src } = await withRows(5, 'hot');
    let running = true;
    let localTxs = 0;
    const writer = (async () => {
      const c = new pg.Client({ connectionString: t.url });
      await c.connect();
      while (running) {
        localTxs++;
        await c.query('begin');
        await c.query('insert into items values ($1, $2, 0)', [100_000 + localTxs, 'local new']);
        await c.query(`update items set n = n + 1 where id = $1`, [1 + (localTxs % 5)]);
        await c.query('commit');
      }
      await c.end();
    })();
    for (let round = 0; round < 20; round++) {
      const outcomes = await applier.handleMany(newRowAndHotUpdate(src, round, 50));
      expect(outcomes).toHaveLength(50);
    }
    running = false;
    await writer;
    const s = await state(t.client);
    expect(localTxs).toBeGreaterThan(10);
    expect(s.rows.filter((r) => r.v === 'new')).toHaveLength(1000);
  });
});

describe('apply fast path under concurrent local writes', () => {
  it('loses and doubles nothing on random mixed histories while local writers hit the hot rows', async () => {
    const { seed, rand } = seeded('concurrent fast-path', 'BRABANT_FAST_PATH_SEED');
    const HOT = 8;
    const t = await target();
    const names = [uniqueName('old'), uniqueName('new')];
    const appliers = [await t.applier(names[0]!, 500), await t.applier(names[1]!, 500)];
    const sources = [new Source(names[0]!, BASE_TS), new Source(names[1]!, FUTURE_TS)];
    // Rows only one source writes (ids from 100,000 per source): their end state is known
    // exactly whatever the interleaving; hot rows 1–8 are fought over by both sources and the
    // local writers, so only their presence in the conflict log is checked.
    const own = [new Map<number, { v: string; n: number; ts: bigint } | null>(), new Map()];
    const nextOwn = [100_000, 200_000];
    const last: bigint[] = [0n, 0n];
    let running = true;
    let localTxs = 0;
    let localDeadlocks = 0;
    const writers = [1, 2].map(async (w) => {
      const c = new pg.Client({ connectionString: t.url });
      await c.connect();
      while (running) {
        localTxs++;
        const id = 1 + ((localTxs * 7 + w) % HOT);
        // (a deadlock with apply may choose this writer as its victim: an application retries)
        await c
          .query(
            [
              `insert into items values ($1, 'local', ${w}) on conflict (id) do update set v = 'local', n = items.n + 1`,
              'update items set n = n + 1 where id = $1',
              'delete from items where id = $1',
            ][localTxs % 3]!,
            [id],
          )
          .catch((err: { code?: string }) => {
            if (err.code !== '40P01') throw err;
            localDeadlocks++;
          });
      }
      await c.end();
    });
    let txCount = 0;
    try {
      for (let batch = 0; batch < 60; batch++) {
        const s = rand(2);
        const src = sources[s]!;
        const changes: DecodedChange[] = [];
        const n = 1 + rand(80);
        for (let k = 0; k < n; k++) {
          const ops: Op[] = [];
          const staged: [number, { v: string; n: number } | null][] = [];
          for (let o = 1 + rand(4); o > 0; o--) {
            const kind = rand(6);
            const mine = [...own[s]!.entries()].filter(([, row]) => row !== null).map(([id]) => id);
            if (kind <= 1 || mine.length === 0) {
              const id = nextOwn[s]!++;
              ops.push({ op: 'INSERT', id, v: `b${batch}`, n: k });
              staged.push([id, { v: `b${batch}`, n: k }]);
            } else if (kind === 2) {
              const id = mine[rand(mine.length)]!;
              if (staged.some(([x]) => x === id)) continue;
              ops.push({ op: 'UPDATE', id, v: `u${batch}`, n: k });
              staged.push([id, { v: `u${batch}`, n: k }]);
            } else if (kind === 3) {
              const id = mine[rand(mine.length)]!;
              if (staged.some(([x]) => x === id)) continue;
              ops.push({ op: 'DELETE', id });
              staged.push([id, null]);
            } else {
              ops.push({
                op: (['INSERT', 'UPDATE', 'DELETE'] as const)[rand(3)]!,
                id: 1 + rand(HOT),
                v: 'remote',
                n: k,
              });
            }
          }
          const tx = src.tx(ops);
          changes.push(...tx);
          const ts = tx[0]!.tx.commitTs;
          for (const [id, row] of staged) own[s]!.set(id, row === null ? null : { ...row, ts });
          last[s] = tx[0]!.tx.commitLsn;
          txCount++;
        }
        const outcomes = await appliers[s]!.handleMany(changes);
        expect(outcomes).toHaveLength(n);
      }
    } finally {
      running = false;
      await Promise.all(writers);
    }
    expect(localTxs).toBeGreaterThan(20);
    const retries = () =>
      (t.metrics.registry.render().match(/^brabant_apply_collision_retries_total\{.*\} \d+$/gm) ?? [])
        .map((line) => Number(line.split(' ').at(-1)))
        .reduce((a, b) => a + b, 0);
    const rows = await t.client.query<{ id: number; v: string; n: number; ts: string; roname: string }>(
      `select i.id, i.v, i.n, (extract(epoch from (pg_xact_commit_timestamp_origin(i.xmin)).timestamp) * 1000000)::int8::text as ts, o.roname
         from items i join pg_replication_origin o on o.roident = (pg_xact_commit_timestamp_origin(i.xmin)).roident
        where i.id >= 100000 order by i.id`,
    );
    const expected = own.flatMap((m, s) =>
      [...m.entries()]
        .filter(([, row]) => row !== null)
        .map(([id, row]) => ({ id, v: row!.v, n: row!.n, ts: String(row!.ts), roname: appliers[s]!.origin })),
    );
    expected.sort((a, b) => a.id - b.id);
    expect(rows.rows).toEqual(expected);
    // each source's origin ends at its last commit: nothing skipped, nothing to replay
    for (const s of [0, 1]) {
      const p = await t.client.query<{ p: string }>(
        'select pg_replication_origin_progress($1, false)::text as p',
        [appliers[s]!.origin],
      );
      expect(parseLsn(p.rows[0]!.p)).toBe(last[s]);
    }
    console.log(
      `seed ${seed}: ${txCount} source transactions, ${expected.length} rows owned by a source, ${localTxs} local writes (${localDeadlocks} chosen as a deadlock's victim), ${retries()} collisions retried`,
    );
  });
});
