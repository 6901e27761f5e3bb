/**
 * `brabant resync NODE --table T` re-emits a table's current rows into the node's change stream
 * while it takes writes: a new consumer reading the topic from the resync on gets every row (an
 * INSERT with its original version in the headers) and every remembered delete; stopped half-way
 * the same command goes on where it was, and a capture restart in the middle loses nothing.
 * And the repair of issue 13: a node's slot dropped under writes and created anew loses what was
 * committed in between for the other region; `brabant resync NODE`, run under writes, gives it
 * back with the same versions, and a peer's newer write to such a row still wins.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { originName } from '../services/protocol/names.ts';
import { brabant, spawnBrabant, waitUntil } from './support/cli.ts';
import { dropSlot, type Pair, replicationPair, type Side, waitConverged } from './support/pair.ts';
import { region, stack } from './support/stack.ts';
import { plainRow, readTopic, type TopicEvent } from './support/topic.ts';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

const env = () => ({ ...process.env, BRABANT_HOME: stack().workDir });
const dbOf = (url: string) => new URL(url).pathname.slice(1);
const resyncRows = (es: TopicEvent[]) => es.filter((e) => e.headers['brabant.resync'] !== undefined);

/** Each row's version on the node: its xmin's commit time (unix micros). */
async function versions(p: Pair, table: string): Promise<Map<string, string>> {
  const r = await p.vl.client.query<{ id: string; ts: string }>(
    `select id::text, (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000000)::int8::text as ts from ${table}`,
  );
  return new Map(r.rows.map((x) => [x.id, x.ts]));
}

describe('brabant resync', () => {
  it('replays a table into the stream: every row as an INSERT with its original version, remembered deletes as DELETEs', async () => {
    pair = await replicationPair(
      'create table items (id int primary key, v text, flag bool, at timestamptz); create table other (id int primary key)',
    );
    const { vl } = pair;
    const capture = pair.capture(vl);
    await capture.waitForLog(/capture session starting/);
    // apply on the node installs the delete triggers: the deletes it remembers are its tombstones
    await pair.apply(vl).waitForLog(/apply session running/);
    await vl.client.query(
      `insert into items select g, 'row ' || g, g % 2 = 0, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour'
         from generate_series(1, 2500) g`,
    );
    await vl.client.query('insert into other values (1)');
    await vl.client.query('delete from items where id in (7, 8)');
    const want = await versions(pair, 'items');

    const r = await brabant(
      [
        'resync',
        'vl-1',
        '--database',
        dbOf(vl.url),
        '--table',
        'items',
        '--chunk-rows',
        '1000',
        '--timeout',
        '60',
      ],
      env(),
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/resync rs-\S+: public\.items, chunks of 1000 rows/);
    expect(r.out).toMatch(/tables 1\/1, chunks 4, rows 2,498 \(\+2 deletes\), [\d,]+ rows\/s, done/);
    expect(r.out).toMatch(/has sent all of it to Kafka/);

    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      vl.names.topic,
      (es) => resyncRows(es).length >= 2500,
    );
    const rows = resyncRows(events);
    const inserts = rows.filter((e) => e.value.op === 'INSERT');
    expect(inserts).toHaveLength(2498);
    expect(rows.every((e) => e.headers['brabant.envelope'] === '2' && e.value.envelope === 2)).toBe(true);
    // each with the commit time of the row's own write, not the resync's
    for (const e of inserts) {
      const id = String((plainRow(e, 'after') as { id: number }).id);
      expect(e.headers['brabant.version-ts']).toBe(want.get(id));
      expect(e.headers['brabant.version-node']).toBe(vl.names.nodeId);
    }
    const row5 = plainRow(inserts.find((e) => (e.value.key as { id: number }).id === 5)!, 'after');
    expect(row5).toMatchObject({ id: 5, v: 'row 5', flag: false });
    expect(rows.filter((e) => e.value.op === 'DELETE').map((e) => e.value.key)).toEqual([
      { id: 7 },
      { id: 8 },
    ]);
    // only the table asked for
    expect(rows.every((e) => e.value.table === 'items')).toBe(true);
  });

  it('goes on where it was when run again after being stopped, and a capture restart in the middle loses nothing', async () => {
    pair = await replicationPair('create table items (id int primary key, v text)');
    const { vl } = pair;
    let capture = pair.capture(vl);
    await capture.waitForLog(/capture session starting/);
    await vl.client.query(`insert into items select g, 'row ' || g from generate_series(1, 6000) g`);
    const args = [
      'resync',
      'vl-1',
      '--database',
      dbOf(vl.url),
      '--table',
      'items',
      '--chunk-rows',
      '10',
      '--timeout',
      '60',
    ];
    const chunks = async () =>
      (
        await vl.client
          .query<{ n: number }>('select coalesce(max(chunks), 0)::int as n from brabant.resyncs')
          .catch(() => ({ rows: [{ n: 0 }] }))
      ).rows[0]!.n;

    const first = spawnBrabant(args, env());
    await waitUntil('the first chunks written', async () => (await chunks()) >= 2, 60_000);
    // capture is killed in the middle of the resync (and started again)
    await capture.kill('SIGKILL');
    capture = pair.capture(vl);
    await waitUntil('more chunks written', async () => (await chunks()) >= 10, 60_000);
    // the command held inside a chunk (its low watermark committed, its high one not), so it
    // is stopped there, whatever the machine's speed
    const hold = new pg.Client({ connectionString: vl.url });
    await hold.connect();
    await hold.query('begin');
    await hold.query('select * from brabant.resyncs for update');
    // one command at a time: a second would write every chunk twice
    const second = await brabant(args, env());
    expect(second.code).toBe(1);
    expect(second.out).toContain(
      'CONFIG_INVALID: another brabant resync of public.items is running on node vl-1',
    );
    first.child.kill('SIGKILL');
    // its chunk's transaction ends with its connection: the window it opened never closes
    await hold.query('rollback');
    await hold.end();
    await waitUntil('the stopped command gone from the node', async () => {
      const r = await vl.client.query(
        `select count(*)::int as n from pg_stat_activity where application_name = 'brabant-resync'`,
      );
      return r.rows[0].n === 0;
    });
    const written = await chunks();
    expect(written).toBeLessThan(600);

    const again = await brabant(args, env());
    expect(again.code, again.out).toBe(0);
    expect(again.out).toMatch(
      /going on with resync rs-\S+ .*: \d+ chunk\(s\) written, next: public\.items \(rows\)/,
    );
    const runs = await vl.client.query(
      'select id, rows::int, finished_at is not null as done from brabant.resyncs',
    );
    expect(runs.rows).toEqual([{ id: expect.stringMatching(/^rs-/), rows: 6000, done: true }]);

    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      vl.names.topic,
      (es) => resyncRows(es).length >= 6000,
    );
    // every row once: a chunk is written with its progress in one transaction, and capture's
    // restart skips what Kafka already holds
    const ids = resyncRows(events).map((e) => (e.value.key as { id: number }).id);
    expect(ids.length).toBe(6000);
    expect(new Set(ids).size).toBe(6000);
  });

  it('re-sends a partitioned table by its partitions, as pgoutput sends their changes', async () => {
    pair = await replicationPair(
      `create table parted (id int primary key, v text) partition by range (id);
       create table parted_low partition of parted for values from (0) to (100);
       create table parted_high partition of parted for values from (100) to (200)`,
    );
    const { vl } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    await vl.client.query(`insert into parted select g, 'row ' || g from generate_series(1, 150) g`);
    const r = await brabant(['resync', 'vl-1', '--database', dbOf(vl.url), '--timeout', '60'], env());
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/resync rs-\S+: public\.parted_high, public\.parted_low, chunks of 1000 rows/);
    expect(r.out).not.toMatch(/skipping/);
    const events = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      vl.names.topic,
      (es) => resyncRows(es).length >= 150,
    );
    const byTable = new Map<string, number>();
    for (const e of resyncRows(events))
      byTable.set(String(e.value.table), (byTable.get(String(e.value.table)) ?? 0) + 1);
    expect(byTable).toEqual(
      new Map([
        ['parted_high', 51],
        ['parted_low', 99],
      ]),
    );
  });

  it('refuses a table it cannot re-send, saying why, before it writes anything', async () => {
    pair = await replicationPair('create table keyless (a int, b text)');
    const { vl } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    const r = await brabant(['resync', 'vl-1', '--database', dbOf(vl.url), '--table', 'keyless'], env());
    expect(r.code).toBe(1);
    expect(r.out).toContain(
      'CONFIG_INVALID: cannot resync keyless: public.keyless has no primary key or replica identity index',
    );
    const n = await vl.client.query('select count(*)::int as n from brabant.resyncs');
    expect(n.rows[0].n).toBe(0);
  });

  it('after a slot dropped under writes and created anew, gives the other region every committed row with its version; a newer peer write still wins', async () => {
    pair = await replicationPair('create table items (id int primary key, v text)');
    const { vl, wa } = pair;
    let capture = pair.capture(vl);
    let applyVl = pair.apply(vl);
    await Promise.all([
      capture.waitForLog(/capture session starting/),
      pair.capture(wa).waitForLog(/capture session starting/),
      pair.apply(wa).waitForLog(/apply session running/),
      applyVl.waitForLog(/apply session running/),
    ]);
    // ids 1-10 are written by the test itself, 11-400 by the writer
    const model = new Map<number, string>();
    await vl.client.query(`insert into items select g, 'seed ' || g from generate_series(1, 200) g`);
    for (let id = 1; id <= 200; id++) model.set(id, `seed ${id}`);
    await waitConverged(pair.sides, 'items', (rows) => rows.length === 200);

    const writer = await startWriter(vl, model);
    await waitUntil('writes committed', () => writer.committed() >= 50);
    // the slot dropped under writes: capture stops with SLOT_LOST
    await dropSlot(vl);
    expect(await capture.exited).toBe(1);
    expect(capture.lines.join('\n')).toMatch(/SLOT_LOST: .*brabant resync/);
    // writes while no slot exists (of ids the writer leaves alone, to look at them after)
    await vl.client.query(`update items set v = 'vl in the gap' where id in (1, 3)`);
    await vl.client.query('delete from items where id = 2');
    model.set(1, 'vl in the gap').set(3, 'vl in the gap').delete(2);
    const inGap = writer.committed();
    await waitUntil('writes committed while no slot exists', () => writer.committed() >= inGap + 30);

    capture = pair.capture(vl, { BRABANT_CAPTURE_RECREATE_SLOT: 'true' });
    await capture.waitForLog(/capture session starting/);
    expect(capture.lines.join('\n')).toMatch(/created anew .*run `brabant resync \S+`/);
    await vl.client.query(`update items set v = 'after the new slot' where id = 4`);
    model.set(4, 'after the new slot');
    await waitUntil(
      'wa-1 has what followed the new slot',
      async () => (await itemOf(wa, 4)) === 'after the new slot',
    );
    // what the gap lost: wa-1 never got it
    expect(await itemOf(wa, 1)).toBe('seed 1');
    expect(await itemOf(wa, 2)).toBe('seed 2');

    // a peer's write newer than the gap's, which vl-1 has not applied when it resyncs
    await applyVl.kill('SIGKILL');
    await wa.client.query(`update items set v = 'wa, newer' where id = 1`);
    model.set(1, 'wa, newer');

    const started = Date.now();
    const r = await brabant(
      ['resync', 'vl-1', '--database', dbOf(vl.url), '--chunk-rows', '50', '--timeout', '60'],
      env(),
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/tables 1\/1, chunks \d+, rows [\d,]+ \(\+[\d,]+ deletes\), [\d,]+ rows\/s, done/);
    expect(r.out).toMatch(/has sent all of it to Kafka/);
    const writes = await writer.stop();

    applyVl = pair.apply(vl);
    await vl.client.query(`update items set v = 'the end' where id = 5`);
    model.set(5, 'the end');
    const rows = await waitConverged(
      pair.sides,
      'items',
      (rs) => {
        const got = byId(rs);
        return got.get(5) === 'the end' && got.get(1) === 'wa, newer';
      },
      90_000,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await differences(pair!.sides, model)}`);
    });
    console.log(
      `[resync] ${writes} writes of vl-1 (${inGap}+ before the new slot), resync and convergence in ${Date.now() - started} ms`,
    );
    // every committed write, on both
    expect(byId(rows)).toEqual(new Map([...model].sort(([a], [b]) => a - b)));
    // with the same versions
    expect(await versionsOf(wa)).toEqual(await versionsOf(vl));
  }, 240_000);
});

/** tableRows' JSON lines of items as id -> v, in id order. */
const byId = (rows: string[]) =>
  new Map(
    rows
      .map((r) => JSON.parse(r) as { id: number; v: string })
      .sort((a, b) => a.id - b.id)
      .map((r) => [r.id, r.v]),
  );

/** What `id` holds on a side (undefined: no row). */
async function itemOf(s: Side, id: number): Promise<string | undefined> {
  const r = await s.client.query<{ v: string }>('select v from items where id = $1', [id]);
  return r.rows[0]?.v;
}

/** Inserts, updates and deletes of ids 11-400 on a connection of its own until stopped; each committed one is in `model`. */
async function startWriter(s: Side, model: Map<number, string>) {
  const c = new pg.Client({ connectionString: s.url });
  await c.connect();
  let stop = false;
  let n = 0;
  // mulberry32: a fixed sequence of ids and operations
  let x = 7;
  const next = () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = Math.imul(x ^ (x >>> 15), x | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const done = (async () => {
    while (!stop) {
      const id = 11 + (next() % 390);
      if (next() % 4 === 0) {
        await c.query('delete from items where id = $1', [id]);
        model.delete(id);
      } else {
        const v = `w ${n}`;
        await c.query('insert into items values ($1, $2) on conflict (id) do update set v = excluded.v', [
          id,
          v,
        ]);
        model.set(id, v);
      }
      n++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    committed: () => n,
    async stop(): Promise<number> {
      stop = true;
      await done;
      await c.end();
      return n;
    },
  };
}

/** Each row's version as last-writer-wins reads it (a resync's recorded one, else its xmin's), by origin name. */
async function versionsOf(s: Side): Promise<string[]> {
  const r = await s.client.query<{ id: number; ts: string; origin: string | null }>(
    `select t.id, v.row_ts as ts, v.row_origin as origin
       from items t cross join lateral brabant.row_version_at('public.items', jsonb_build_object('id', t.id), t.xmin) v
      order by t.id`,
  );
  return r.rows.map((x) => `${x.id} ${x.ts} ${x.origin ?? originName(s.names.nodeId)}`);
}

/** How each side differs from the writes committed (for a failure's message). */
async function differences(sides: Side[], model: Map<number, string>): Promise<string> {
  const out: string[] = [];
  for (const s of sides) {
    const r = await s.client.query<{ id: number; v: string }>('select id, v from items');
    const got = new Map(r.rows.map((x) => [x.id, x.v]));
    const diff: string[] = [];
    for (const [id, v] of model)
      if (got.get(id) !== v) diff.push(`${id}: ${got.get(id) ?? '(none)'} not ${v}`);
    for (const [id, v] of got) if (!model.has(id)) diff.push(`${id}: ${v} not (none)`);
    out.push(`${s.names.nodeId}: ${diff.length} differ: ${diff.slice(0, 12).join('; ')}`);
  }
  return out.join('\n');
}
