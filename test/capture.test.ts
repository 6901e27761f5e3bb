/**
 * Capture against the real stack: every committed change of a node arrives in its region's topic
 * in order with correct values, readable by a consumer that knows nothing of Brabant; changes
 * applied under a replication origin are not captured.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { captureNames, type ServiceProcess, startCapture } from './support/services.ts';
import { createDatabase, node, region, stack } from './support/stack.ts';
import { assertNoDuplicates, readTopic, type TopicEvent } from './support/topic.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function setupDb(sql: string) {
  const db = await createDatabase(node('vl-1'));
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query(sql);
  cleanups.push(async () => {
    await client.end();
    await db.drop();
  });
  return { db, client };
}

function run(names: ReturnType<typeof captureNames>, env: Record<string, string> = {}): ServiceProcess {
  const p = startCapture(names, env);
  cleanups.push(() => p.kill('SIGKILL'));
  return p;
}

const tableEvents = (events: TopicEvent[]) => events.filter((e) => 'op' in e.value);
const row = (e: TopicEvent, side: 'before' | 'after') => e.value[side] as Record<string, unknown> | null;

describe('capture', () => {
  it('streams inserts, updates, deletes, truncates and messages of all supported types in order', async () => {
    const { db, client } = await setupDb(`
      create type mood as enum ('sad', 'ok', 'happy');
      create table kinds (
        id bigint primary key, i2 smallint, i4 integer, b boolean, f4 real, f8 double precision,
        n numeric(10,2), nu numeric, t text, vc varchar(20), by bytea, u uuid, d date, tm time,
        ts timestamp, tz timestamptz, j json, jb jsonb, arr int[], tarr text[], m mood, iv interval
      );
      create table plain (k text primary key, v int);
      alter table plain replica identity full;`);
    const names = captureNames(node('vl-1'), db.url);
    const capture = run(names);
    await capture.waitForLog(/capture session starting/);
    await client.query(`insert into kinds values (1, -32768, 2147483647, true, 1.5, -2.25e300, 12345678.91, 3.14159265358979323846,
      'héllo "wörld"', 'short', '\\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '13:45:07.25',
      '2026-11-26 04:02:42.123456', '2026-11-26 04:02:42.123456+02', '{"a": 1}', '{"b": [1, 2]}', '{1,NULL,3}',
      '{"a b",c}', 'happy', '1 day 02:00:00')`);
    await client.query('begin');
    await client.query(`update kinds set i4 = 7, n = 'NaN' where id = 1`);
    await client.query(`select pg_logical_emit_message(true, 'app.note', 'hello')`);
    await client.query(`insert into plain values ('x', 1), ('y', 2)`);
    await client.query(`update plain set v = 3 where k = 'x'`);
    await client.query(`delete from plain where k = 'y'`);
    await client.query('commit');
    await client.query('delete from kinds where id = 1');
    await client.query('truncate plain');

    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      names.topic,
      (es) => es.length >= 9,
    );
    assertNoDuplicates(events);
    expect(events.every((e) => e.key === names.nodeId)).toBe(true);
    expect(
      events.map((e) =>
        'op' in e.value ? `${e.value.op} ${e.value.table}` : `${e.value.kind} ${e.value.prefix}`,
      ),
    ).toEqual([
      'INSERT kinds',
      'UPDATE kinds',
      'MESSAGE app.note',
      'INSERT plain',
      'INSERT plain',
      'UPDATE plain',
      'DELETE plain',
      'DELETE kinds',
      'TRUNCATE plain',
    ]);
    // transaction metadata: one source transaction, numbered, last flagged, same commit LSN
    const txs = events
      .slice(1, 7)
      .map((e) => e.value.tx as { index: number; last: boolean; commitLsn: number; commitTs: number });
    expect(txs.map((t) => t.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(txs.map((t) => t.last)).toEqual([false, false, false, false, false, true]);
    expect(new Set(txs.map((t) => t.commitLsn)).size).toBe(1);
    expect(Math.abs(txs[0]!.commitTs / 1000 - Date.now())).toBeLessThan(120_000);
    expect(events[0]!.value.origin).toEqual({ region: 'vlaanderen', node: names.nodeId });

    const ins = row(events[0]!, 'after')!;
    const plainValue = (v: unknown) =>
      v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && !Array.isArray(v)
        ? Object.values(v)[0]
        : v;
    const got = Object.fromEntries(Object.entries(ins).map(([k, v]) => [k, plainValue(v)]));
    expect(got).toMatchObject({
      id: 1,
      i2: -32768,
      i4: 2147483647,
      b: true,
      f4: 1.5,
      f8: -2.25e300,
      t: 'héllo "wörld"',
      vc: 'short',
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      d: 19782,
      tm: 49507250000,
      ts: 1795665762123456,
      tz: 1795658562123456,
      j: '{"a": 1}',
      jb: '{"b": [1, 2]}',
      m: 'happy',
      iv: 'P1DT2H',
      nu: '3.14159265358979323846',
    });
    // numeric(10,2) as an Avro decimal: unscaled 1234567891, scale 2
    expect(BigInt(`0x${(got.n as Buffer).toString('hex')}`)).toBe(1234567891n);
    expect((got.by as Buffer).toString('hex')).toBe('deadbeef');
    expect(got.arr).toEqual([1, null, 3]);
    expect(got.tarr).toEqual(['a b', 'c']);
    // NaN in numeric(10,2) travels in the string branch
    expect(plainValue(row(events[1]!, 'after')!.n)).toBe('NaN');
    // REPLICA IDENTITY FULL gives the old row; the key is the replica identity columns. (text can
    // be "unchanged", so its union has a string and an enum branch and avsc keeps it wrapped.)
    expect(row(events[5]!, 'before')).toEqual({ k: { string: 'x' }, v: 1 });
    expect(row(events[5]!, 'after')).toEqual({ k: { string: 'x' }, v: 3 });
    expect(events[6]!.value.key).toEqual({ k: 'y', v: 2 });
    expect(events[7]!.value.key).toEqual({ id: 1 });
    expect(events[7]!.value.before).toBeNull();
    expect(events[8]!.value.key).toBeNull();
    expect((events[2]!.value.content as Buffer).toString()).toBe('hello');
    expect(tableEvents(events)).toHaveLength(8);
  });

  it('marks unchanged TOAST values as unchanged, never as null', async () => {
    const { db, client } = await setupDb(`create table docs (id int primary key, body text, n int);
      alter table docs alter column body set storage external;`);
    const names = captureNames(node('vl-1'), db.url);
    const capture = run(names);
    await capture.waitForLog(/capture session starting/);
    await client.query(`insert into docs values (1, repeat('x', 100000), 1)`);
    await client.query('update docs set n = 2 where id = 1');
    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      names.topic,
      (es) => es.length >= 2,
    );
    expect((row(events[0]!, 'after')!.body as { string: string }).string).toHaveLength(100000);
    expect(row(events[1]!, 'after')).toEqual({
      id: 1,
      body: { 'brabant.v1.Unchanged': 'UNCHANGED_TOAST' },
      n: 2,
    });
  });

  it('does not capture transactions applied under a replication origin (no loops)', async () => {
    const { db, client } = await setupDb('create table t (id int primary key, v text)');
    const names = captureNames(node('vl-1'), db.url);
    const capture = run(names);
    await capture.waitForLog(/capture session starting/);
    await client.query(`insert into t values (1, 'local before')`);
    await client.query(`select pg_replication_origin_create('brabant_peer')`);
    await client.query(`select pg_replication_origin_session_setup('brabant_peer')`);
    await client.query('begin');
    await client.query(`select pg_replication_origin_xact_setup('0/AB', now())`);
    await client.query(`insert into t values (2, 'from a peer')`);
    await client.query('commit');
    await client.query('select pg_replication_origin_session_reset()');
    await client.query(`insert into t values (3, 'local after')`);
    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      names.topic,
      (es) => es.some((e) => (row(e, 'after') as { id: number }).id === 3),
    );
    // the topic is in commit order: the peer's row 2 would sit between 1 and 3
    expect(events.map((e) => (row(e, 'after') as { id: number }).id)).toEqual([1, 3]);
  });

  it('sends heartbeats when idle, and they move the slot past changes to unpublished tables', async () => {
    const { db, client } = await setupDb(
      'create table pub (id int primary key); create table unpub (id int primary key)',
    );
    const names = captureNames(node('vl-1'), db.url);
    const capture = run(names, { BRABANT_CAPTURE_TABLES: 'public.pub', BRABANT_CAPTURE_HEARTBEAT_MS: '200' });
    await capture.waitForLog(/capture session starting/);
    await client.query('insert into unpub select generate_series(1, 1000)');
    const walAfter = (await client.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn'))
      .rows[0]!.lsn;
    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      names.topic,
      (es) => es.filter((e) => e.value.kind === 'HEARTBEAT').length >= 3,
    );
    expect(events.every((e) => e.value.kind === 'HEARTBEAT')).toBe(true);
    const deadline = Date.now() + 20_000;
    let advanced = false;
    while (!advanced && Date.now() < deadline) {
      const r = await client.query<{ ok: boolean }>(
        'select confirmed_flush_lsn >= $1::pg_lsn as ok from pg_replication_slots where slot_name = $2',
        [walAfter, names.slot],
      );
      advanced = r.rows[0]?.ok === true;
      if (!advanced) await new Promise((res) => setTimeout(res, 200));
    }
    expect(advanced).toBe(true);
  });

  it('captures several databases of one server at once, each with its own slot and stream', async () => {
    const one = await setupDb('create table t (id int primary key, db text)');
    const two = await setupDb('create table t (id int primary key, db text)');
    const n1 = captureNames(node('vl-1'), one.db.url);
    const n2 = captureNames(node('vl-1'), two.db.url);
    await Promise.all([
      run(n1).waitForLog(/capture session starting/),
      run(n2).waitForLog(/capture session starting/),
    ]);
    await Promise.all([
      one.client.query(`insert into t select g, 'one' from generate_series(1, 50) g`),
      two.client.query(`insert into t select g, 'two' from generate_series(1, 70) g`),
    ]);
    const brokers = region('vlaanderen').kafkaBrokers;
    const [e1, e2] = await Promise.all([
      readTopic(brokers, stack().registryUrl, n1.topic, (es) => es.length >= 50),
      readTopic(brokers, stack().registryUrl, n2.topic, (es) => es.length >= 70),
    ]);
    expect(new Set(e1.map((e) => (row(e, 'after') as { db: { string: string } }).db.string))).toEqual(
      new Set(['one']),
    );
    expect(new Set(e2.map((e) => (row(e, 'after') as { db: { string: string } }).db.string))).toEqual(
      new Set(['two']),
    );
    const slots = await one.client.query(
      'select slot_name, database from pg_replication_slots where slot_name = any($1)',
      [[n1.slot, n2.slot]],
    );
    expect(slots.rows.map((r) => r.database).sort()).toEqual([one.db.name, two.db.name].sort());
  });

  it('finishes the current batch on SIGTERM, confirms it to the slot and exits 0', async () => {
    const { db, client } = await setupDb('create table t (id int primary key)');
    const names = captureNames(node('vl-1'), db.url);
    // a long batch window: the rows are still batched when the signal comes
    const capture = run(names, { BRABANT_CAPTURE_BATCH_MS: '60000', BRABANT_CAPTURE_BATCH_EVENTS: '100000' });
    await capture.waitForLog(/capture session starting/);
    // the position just before this transaction's commit record: the slot must be confirmed past
    // it (the server's current position would include other tests' WAL, written meanwhile)
    await client.query('begin');
    await client.query('insert into t select generate_series(1, 100)');
    const wal = (await client.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn'))
      .rows[0]!.lsn;
    await client.query('commit');
    await capture.waitForLog(/table version registered/);
    await new Promise((r) => setTimeout(r, 300));
    expect(await capture.kill('SIGTERM')).toBe(0);
    expect(capture.lines.join('\n')).toMatch(
      /stopping: finishing the current batch.*"pending":100|"pending":100.*stopping: finishing the current batch/,
    );
    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      names.topic,
      (es) => es.length >= 100,
    );
    expect(events).toHaveLength(100);
    const slot = await client.query<{ ok: boolean }>(
      'select confirmed_flush_lsn >= $1::pg_lsn as ok from pg_replication_slots where slot_name = $2',
      [wal, names.slot],
    );
    expect(slot.rows[0]!.ok).toBe(true);
  });
});
