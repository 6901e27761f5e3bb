/**
 * Apply against the real stack: a peer's changes arrive in order, exactly once, under the
 * replication origin (so they keep their original commit time and origin and are not captured
 * again), in both directions at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodePosition } from '../services/protocol/headers.ts';
import { parseLsn } from '../services/protocol/lsn.ts';
import { type Pair, replicationPair, waitConverged } from './support/pair.ts';
import { region, stack } from './support/stack.ts';
import { plainRow, readTopic } from './support/topic.ts';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

const SCHEMA = `create table items (id bigint primary key, region text, qty int, payload text, price numeric(10,2), tags text[], updated_at timestamptz);
  create table notes (k text primary key, body text);`;

describe('apply', () => {
  it('applies a peer’s inserts, updates, deletes and truncates, keeping the original commit time and origin', async () => {
    pair = await replicationPair(SCHEMA);
    const { vl, wa } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    await pair.apply(wa).waitForLog(/apply session running/);
    await vl.client.query(
      `insert into items select g, 'vlaanderen', g, md5(g::text), g * 1.5, array['a', g::text], now() from generate_series(1, 500) g`,
    );
    await vl.client.query('begin');
    await vl.client.query('update items set qty = qty + 1000 where id <= 100');
    await vl.client.query('delete from items where id > 450');
    await vl.client.query(`insert into notes values ('a', 'x'), ('b', 'y')`);
    await vl.client.query('commit');
    await vl.client.query('truncate notes');
    await vl.client.query(`insert into notes values ('c', 'z')`);
    const rows = await waitConverged(pair.sides, 'items', (r) => r.length === 450);
    expect(rows[0]).toContain('"qty":1001');
    await waitConverged(pair.sides, 'notes', (r) => r.length === 1 && r[0]!.includes('"k":"c"'));

    // the applied rows carry the source's commit time and the source's origin
    const src = await vl.client.query(
      `select pg_xact_commit_timestamp(xmin)::text as ts from items where id = 1`,
    );
    const dst = await wa.client.query(
      `select (pg_xact_commit_timestamp_origin(i.xmin)).timestamp::text as ts, o.roname from items i
         join pg_replication_origin o on o.roident = (pg_xact_commit_timestamp_origin(i.xmin)).roident where id = 1`,
    );
    expect(dst.rows[0]).toEqual({ ts: src.rows[0].ts, roname: `brabant_${vl.names.nodeId}` });
    // and the origin's progress is the commit LSN of the source's last transaction (the last
    // event of its stream: heartbeats are off in these tests)
    const stream = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      vl.names.topic,
      (es) => es.some((e) => e.value.table === 'notes' && plainRow(e, 'after')?.k === 'c'),
    );
    const last = decodePosition(stream[stream.length - 1]!.headers)!;
    const progress = await wa.client.query<{ p: string }>(
      `select pg_replication_origin_progress($1, true)::text as p`,
      [`brabant_${vl.names.nodeId}`],
    );
    expect(parseLsn(progress.rows[0]!.p)).toBe(last.commitLsn);
  });

  it('replicates both ways at once without loops', async () => {
    pair = await replicationPair(SCHEMA);
    const { vl, wa } = pair;
    const started = pair.sides.flatMap((s) => [
      pair!.capture(s).waitForLog(/capture session starting/),
      pair!.apply(s).waitForLog(/apply session running/),
    ]);
    await Promise.all(started);
    await Promise.all([
      vl.client.query(
        `insert into items select g, 'vlaanderen', 1, 'v', 1, null, now() from generate_series(1, 300) g`,
      ),
      wa.client.query(
        `insert into items select g, 'wallonie', 2, 'w', 2, null, now() from generate_series(1001, 1300) g`,
      ),
    ]);
    const rows = await waitConverged(pair.sides, 'items', (r) => r.length === 600);
    expect(rows.filter((r) => r.includes('wallonie'))).toHaveLength(300);
    // no loop: each node's stream holds exactly its own 300 inserts and none of the rows it
    // applied. A marker written on each node after everything converged ends each stream: an
    // applied row captured again would sit before it.
    await vl.client.query(`insert into items values (9001, 'marker', 0, 'v', 0, null, now())`);
    await wa.client.query(`insert into items values (9002, 'marker', 0, 'w', 0, null, now())`);
    await waitConverged(pair.sides, 'items', (r) => r.length === 602);
    for (const [side, own, marker] of [
      [vl, 'vlaanderen', 9001],
      [wa, 'wallonie', 9002],
    ] as const) {
      const events = await readTopic(
        region(side.node.region).kafkaBrokers,
        stack().registryUrl,
        side.names.topic,
        (es) => es.some((e) => plainRow(e, 'after')?.id === marker),
      );
      const written = events
        .filter((e) => e.value.table === 'items')
        .map((e) => plainRow(e, 'after') as { id: number; region: string });
      expect(written.filter((r) => r.id !== marker && r.region !== own)).toEqual([]);
      expect(written).toHaveLength(301);
    }
  });

  it('keeps tombstones until every peer applied past them, then prunes them', async () => {
    pair = await replicationPair('create table c (id int primary key, v text)');
    const { vl, wa } = pair;
    const env = { BRABANT_APPLY_PRUNE_INTERVAL_MS: '300', BRABANT_APPLY_TOMBSTONE_MARGIN_MS: '2000' };
    await Promise.all([
      pair.capture(vl).waitForLog(/capture session starting/),
      pair.capture(wa).waitForLog(/capture session starting/),
    ]);
    await pair.apply(wa, env).waitForLog(/apply session running/);
    await vl.client.query(`insert into c values (1, 'a'), (2, 'b')`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 2);
    await wa.client.query('delete from c where id = 1'); // local delete on wa: the trigger leaves a tombstone
    await vl.client.query('delete from c where id = 2'); // applied delete on wa: apply leaves a tombstone
    await waitConverged([wa], 'c', (r) => r.length === 0);
    const tombstones = async () =>
      (
        await wa.client.query<{ key: unknown }>('select key from brabant.tombstones order by key::text')
      ).rows.map((r) => r.key);
    expect(await tombstones()).toEqual([{ id: 1 }, { id: 2 }]);
    // pruning runs every 300 ms, but the peer has applied nothing newer than the deletes (plus the
    // 2 s margin) yet: they stay
    await new Promise((r) => setTimeout(r, 1000));
    expect(await tombstones()).toEqual([{ id: 1 }, { id: 2 }]);
    // only once the peer has applied something newer than the deletes (plus the margin) may they go
    await new Promise((r) => setTimeout(r, 1500));
    await vl.client.query(`insert into c values (3, 'newer than both deletes')`);
    const deadline = Date.now() + 30_000;
    while ((await tombstones()).length > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect(await tombstones()).toEqual([]);
  });

  it('catches up a backlog written while it was stopped, whatever how Kafka batches cut the transactions', async () => {
    // Capture's Kafka transactions (5,000 events, sent in chunks of 512 KiB) cut the 100-row source
    // transactions at arbitrary places; a fetch that ends inside one must not stall apply.
    pair = await replicationPair(SCHEMA);
    const { vl, wa } = pair;
    await pair.capture(vl, { BRABANT_CAPTURE_BATCH_MS: '200' }).waitForLog(/capture session starting/);
    await vl.client.query(`do $$ begin for i in 0..299 loop
        insert into items select g, 'vlaanderen', g % 100, repeat('x', 100), null, null, now() from generate_series(i * 100 + 1, i * 100 + 100) g;
        commit;
      end loop; end $$`);
    await pair.apply(wa).waitForLog(/apply session running/);
    await waitConverged(pair.sides, 'items', (r) => r.length === 30_000, 120_000);
  });

  it('applies one large source transaction in runs cut inside it, exactly once when killed in the middle of it', async () => {
    // 20,000 rows in one transaction, BRABANT_APPLY_CHUNK_ROWS=500: apply hands it to the node
    // in runs of 500 of its events, the transaction held open on the node across them
    pair = await replicationPair(SCHEMA);
    const { vl, wa } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    await vl.client.query(
      `insert into items select g, 'vlaanderen', g % 100, repeat('x', 200), null, null, now() from generate_series(1, 20000) g`,
    );
    const env = { BRABANT_APPLY_CHUNK_ROWS: '500' };
    const first = pair.apply(wa, env);
    // killed once the node holds part of the transaction, uncommitted
    const deadline = Date.now() + 60_000;
    for (;;) {
      const open = await wa.client.query(
        `select 1 from pg_stat_activity where application_name like 'brabant-apply-%-from-%' and backend_xid is not null`,
      );
      if ((open.rowCount ?? 0) > 0) break;
      if (Date.now() > deadline) throw new Error('apply never held the large transaction open');
      await new Promise((r) => setTimeout(r, 2));
    }
    await first.kill('SIGKILL');
    expect((await wa.client.query('select count(*)::int as n from items')).rows[0].n).toBe(0);
    await pair.apply(wa, env).waitForLog(/apply session running/);
    await waitConverged(pair.sides, 'items', (r) => r.length === 20_000, 120_000);
    // applied once: no row met itself as a conflict
    expect((await wa.client.query('select count(*)::int as n from brabant.conflicts')).rows[0].n).toBe(0);
  });
});
