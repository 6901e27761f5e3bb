/**
 * The convergence proof (test/convergence.test.ts; on a cluster per region,
 * test/convergence-per-region.test.ts): random inserts, updates and deletes on a small key space
 * from both regions at once (so conflicts are frequent). Every committed write is recorded with its commit timestamp and
 * node; after quiescence (1) both nodes hold exactly the same rows and (2) each key's state is the
 * write with the greatest (commit timestamp, node id), deletes included. Also with capture and
 * apply killed with kill -9 at random moments, and with one region's apply stopped for a while.
 *
 * Size: BRABANT_CONVERGENCE_OPS (per node, default 300), BRABANT_CONVERGENCE_KEYS (default 20);
 * BRABANT_CONVERGENCE_SEED replays a run (seeds are printed).
 */
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, type Side, tableRows, waitConverged } from './pair.ts';
import type { ServiceProcess } from './services.ts';

const OPS = Number(process.env.BRABANT_CONVERGENCE_OPS ?? 300);
const KEYS = Number(process.env.BRABANT_CONVERGENCE_KEYS ?? 20);
const CONVERGE_MS = 60_000 + OPS * 20;

export interface Write {
  node: string;
  key: number;
  ts: bigint;
  op: 'upsert' | 'delete';
  val: string;
}

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One node's random writes; each committed write is recorded with its commit timestamp. */
export async function drive(
  side: Side,
  ops: number,
  random: () => number,
  pauseMs: number,
): Promise<Write[]> {
  const c: pg.Client = side.client;
  const writes: Write[] = [];
  for (let i = 0; i < ops; i++) {
    const key = 1 + Math.floor(random() * KEYS);
    const del = random() < 0.25;
    const val = `${side.names.nodeId}:${i}`;
    await c.query('begin');
    const xid = (await c.query<{ x: string }>('select txid_current()::text as x')).rows[0]!.x;
    const res = del
      ? await c.query('delete from kv where id = $1', [key])
      : await c.query('insert into kv values ($1, $2) on conflict (id) do update set val = excluded.val', [
          key,
          val,
        ]);
    await c.query('commit');
    if ((res.rowCount ?? 0) > 0) {
      const ts = await c.query<{ us: string }>(
        `select (extract(epoch from pg_xact_commit_timestamp($1::text::xid)) * 1000000)::int8::text as us`,
        [xid],
      );
      writes.push({
        node: side.names.nodeId,
        key,
        ts: BigInt(ts.rows[0]!.us),
        op: del ? 'delete' : 'upsert',
        val,
      });
    }
    if (pauseMs > 0 && random() < 0.2) await new Promise((r) => setTimeout(r, pauseMs));
  }
  return writes;
}

/** The expected final rows: per key the write with the greatest (commit timestamp, node id). */
export function expected(writes: Write[]): string[] {
  const last = new Map<number, Write>();
  for (const w of writes) {
    const cur = last.get(w.key);
    if (cur === undefined || w.ts > cur.ts || (w.ts === cur.ts && w.node > cur.node)) last.set(w.key, w);
  }
  return [...last.values()]
    .filter((w) => w.op === 'upsert')
    .map((w) => JSON.stringify({ id: w.key, val: w.val }))
    .sort();
}

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

async function startAll(p: Pair): Promise<Map<string, ServiceProcess>> {
  const procs = new Map<string, ServiceProcess>();
  const ready: Promise<string>[] = [];
  for (const s of p.sides) {
    const cap = p.capture(s, { BRABANT_CAPTURE_BATCH_EVENTS: '50' });
    const app = p.apply(s);
    procs.set(`capture:${s.names.nodeId}`, cap);
    procs.set(`apply:${s.names.nodeId}`, app);
    ready.push(cap.waitForLog(/capture session starting/), app.waitForLog(/apply session running/));
  }
  await Promise.all(ready);
  return procs;
}

async function check(p: Pair, writes: Write[], seed: number): Promise<void> {
  const want = expected(writes);
  let rows: string[];
  try {
    rows = await waitConverged(p.sides, 'kv', (r) => JSON.stringify(r) === JSON.stringify(want), CONVERGE_MS);
  } catch (err) {
    const got = await Promise.all(p.sides.map((s) => tableRows(s.client, 'kv')));
    throw new Error(
      `seed ${seed}: ${(err as Error).message}\nexpected ${want.join(' ')}\ngot ${got.map((g) => g.join(' ')).join('\n    ')}`,
    );
  }
  expect(rows).toEqual(want);
  const conflicts = await Promise.all(
    p.sides.map((s) => s.client.query<{ n: string }>('select count(*)::text as n from brabant.conflicts')),
  );
  console.log(
    `seed ${seed}: ${writes.length} writes on ${KEYS} keys converged to ${rows.length} rows; conflicts logged ${conflicts.map((c) => c.rows[0]!.n).join(' + ')}`,
  );
}

const SCHEMA = 'create table kv (id int primary key, val text)';

/**
 * The convergence tests, on the pairs `makePair` gives (the shared test stack, or a stack of the
 * test file's own with a cluster per region).
 */
export function convergenceSuite(title: string, makePair: (schemaSql: string) => Promise<Pair>): void {
  describe(title, { timeout: 240_000 + OPS * 200 }, () => {
    it('both nodes end with the newest write of every key', async () => {
      const seed = Number(process.env.BRABANT_CONVERGENCE_SEED ?? Date.now() % 1_000_000);
      console.log(`convergence seed ${seed} (BRABANT_CONVERGENCE_SEED=${seed} replays it)`);
      pair = await makePair(SCHEMA);
      await startAll(pair);
      const random = rng(seed);
      const [a, b] = [rng(Math.floor(random() * 1e9)), rng(Math.floor(random() * 1e9))];
      const writes = (await Promise.all([drive(pair.vl, OPS, a, 0), drive(pair.wa, OPS, b, 0)])).flat();
      await check(pair, writes, seed);
    });

    it('converges while capture and apply are killed with kill -9 and restarted at random moments', async () => {
      const seed = Number(process.env.BRABANT_CONVERGENCE_SEED ?? (Date.now() + 1) % 1_000_000);
      console.log(`convergence-with-kills seed ${seed}`);
      pair = await makePair(SCHEMA);
      const procs = await startAll(pair);
      const random = rng(seed);
      const [a, b] = [rng(Math.floor(random() * 1e9)), rng(Math.floor(random() * 1e9))];
      let writing = true;
      const driving = Promise.all([drive(pair.vl, OPS, a, 5), drive(pair.wa, OPS, b, 5)]).finally(() => {
        writing = false;
      });
      const p = pair;
      let kills = 0;
      while (writing || kills < 3) {
        await new Promise((r) => setTimeout(r, 150 + random() * 500));
        const names = [...procs.keys()];
        const victim = names[Math.floor(random() * names.length)]!;
        await procs.get(victim)!.kill('SIGKILL');
        kills++;
        const [kind, nodeId] = victim.split(':') as ['capture' | 'apply', string];
        const side = p.sides.find((s) => s.names.nodeId === nodeId)!;
        const again =
          kind === 'capture' ? p.capture(side, { BRABANT_CAPTURE_BATCH_EVENTS: '50' }) : p.apply(side);
        procs.set(victim, again);
      }
      const writes = (await driving).flat();
      console.log(`${kills} processes killed`);
      await check(pair, writes, seed);
    });

    it('converges after one region’s apply was stopped for a while and catches up', async () => {
      const seed = Number(process.env.BRABANT_CONVERGENCE_SEED ?? (Date.now() + 2) % 1_000_000);
      console.log(`convergence-with-outage seed ${seed}`);
      pair = await makePair(SCHEMA);
      const procs = await startAll(pair);
      const random = rng(seed);
      const [a, b] = [rng(Math.floor(random() * 1e9)), rng(Math.floor(random() * 1e9))];
      await procs.get(`apply:${pair.wa.names.nodeId}`)!.kill('SIGTERM');
      const writes = (await Promise.all([drive(pair.vl, OPS, a, 0), drive(pair.wa, OPS, b, 0)])).flat();
      // Wallonie's apply is away while both write; Vlaanderen already has Wallonie's writes.
      await pair.apply(pair.wa).waitForLog(/apply session running/);
      await check(pair, writes, seed);
    });
  });
}
