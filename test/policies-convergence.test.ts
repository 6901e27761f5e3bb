/**
 * The convergence proof under the conflict policies, with capture and apply killed (kill -9) and
 * restarted at random moments while both regions write the same few rows:
 * - `delta` on a counter with `row_lww` for the rest: every increment of both regions counts,
 *   and the other column ends with the latest writer's value;
 * - `column_lww`: each column ends with the value of its latest writer.
 * Every committed write is recorded with its commit timestamp; seeds are printed
 * (BRABANT_POLICY_CONVERGENCE_SEED replays the writes).
 */
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, type Side, waitConverged } from './support/pair.ts';
import { derived, seeded } from './support/random.ts';
import type { ServiceProcess } from './support/services.ts';

const KEYS = 6;
const OPS = Number(process.env.BRABANT_POLICY_CONVERGENCE_OPS ?? 150);

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

interface Write {
  node: string;
  key: number;
  col: string;
  value: string;
  add: number;
  ts: bigint;
}

/** Runs `sql` in its own transaction; the commit timestamp of that transaction (unix µs). */
async function committed(c: pg.Client, sql: string, params: unknown[]): Promise<bigint> {
  await c.query('begin');
  const xid = (await c.query<{ x: string }>('select txid_current()::text as x')).rows[0]!.x;
  await c.query(sql, params);
  await c.query('commit');
  const ts = await c.query<{ us: string }>(
    `select (extract(epoch from pg_xact_commit_timestamp($1::text::xid)) * 1000000)::int8::text as us`,
    [xid],
  );
  return BigInt(ts.rows[0]!.us);
}

async function startAll(p: Pair): Promise<Map<string, ServiceProcess>> {
  const procs = new Map<string, ServiceProcess>();
  for (const s of p.sides) {
    procs.set(`capture:${s.names.nodeId}`, p.capture(s, { BRABANT_CAPTURE_BATCH_EVENTS: '20' }));
    procs.set(`apply:${s.names.nodeId}`, p.apply(s));
  }
  await Promise.all([...procs.values()].map((x) => x.waitForLog(/session (starting|running)/)));
  return procs;
}

/** Kills a random capture or apply every few hundred ms while `busy()`, restarting it at once. */
async function killer(
  p: Pair,
  procs: Map<string, ServiceProcess>,
  rand: (n: number) => number,
  busy: () => boolean,
) {
  let kills = 0;
  while (busy() || kills < 2) {
    await new Promise((r) => setTimeout(r, 200 + rand(500)));
    const names = [...procs.keys()];
    const victim = names[rand(names.length)]!;
    await procs.get(victim)!.kill('SIGKILL');
    kills++;
    const [kind, nodeId] = victim.split(':') as ['capture' | 'apply', string];
    const side = p.sides.find((s) => s.names.nodeId === nodeId)!;
    procs.set(
      victim,
      kind === 'capture' ? p.capture(side, { BRABANT_CAPTURE_BATCH_EVENTS: '20' }) : p.apply(side),
    );
  }
  return kills;
}

/** Per key and column, the value of the write with the greatest (commit time, node). */
function latest(writes: Write[]): Map<string, Write> {
  const out = new Map<string, Write>();
  for (const w of writes) {
    const k = `${w.key}.${w.col}`;
    const cur = out.get(k);
    if (cur === undefined || w.ts > cur.ts || (w.ts === cur.ts && w.node > cur.node)) out.set(k, w);
  }
  return out;
}

const sorted = (rows: Record<string, unknown>[]) =>
  rows.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).sort()))).sort();

async function converge(p: Pair, table: string, want: string[], seed: number): Promise<string[]> {
  return waitConverged(
    p.sides,
    table,
    (rows) => JSON.stringify(sorted(rows.map((x) => JSON.parse(x)))) === JSON.stringify(want),
    120_000,
  ).catch((err: Error) => {
    throw new Error(`seed ${seed}: ${err.message}\nwanted ${want.join(' ')}`);
  });
}

/**
 * OPS writes on each side at once (each from its own seeded stream, a short pause now and then)
 * while the killer kills services; every write made, and how many kills.
 */
async function writeBothUnderKills(
  p: Pair,
  procs: Parameters<typeof killer>[1],
  seed: number,
  rand: Parameters<typeof killer>[2],
  write: (side: Side, r: (n: number) => number, i: number) => Promise<Write>,
): Promise<{ writes: Write[]; kills: number }> {
  let writing = true;
  const drive = async (side: Side, r: (n: number) => number) => {
    const writes: Write[] = [];
    for (let i = 0; i < OPS; i++) {
      writes.push(await write(side, r, i));
      if (r(5) === 0) await new Promise((res) => setTimeout(res, 5));
    }
    return writes;
  };
  const driving = Promise.all([drive(p.vl, derived(seed, 1)), drive(p.wa, derived(seed, 2))]).finally(() => {
    writing = false;
  });
  const kills = await killer(p, procs, rand, () => writing);
  return { writes: (await driving).flat(), kills };
}

describe('conflict policies under kill -9', { timeout: 300_000 }, () => {
  it('delta: every increment of both regions counts, the rest is the latest writer’s', async () => {
    const { seed, rand } = seeded('policy convergence (delta)', 'BRABANT_POLICY_CONVERGENCE_SEED');
    pair = await replicationPair(
      'create table acct (id int primary key, owner text, balance bigint not null)',
    );
    const p = pair;
    const procs = await startAll(p);
    await p.vl.client.query(`select brabant.set_conflict_policy('acct', 'delta', array['balance'])`);
    await p.vl.client.query(`insert into acct select g, 'seed', 0 from generate_series(1, ${KEYS}) g`);
    await waitConverged(p.sides, 'acct', (r) => r.length === KEYS);
    const { writes, kills } = await writeBothUnderKills(p, procs, seed, rand, async (side, r, i) => {
      const key = 1 + r(KEYS);
      const add = r(201) - 100;
      const value = `${side.names.nodeId}:${i}`;
      const ts = await committed(
        side.client,
        'update acct set owner = $2, balance = balance + $3 where id = $1',
        [key, value, add],
      );
      return { node: side.names.nodeId, key, col: 'owner', value, add, ts };
    });
    const owners = latest(writes);
    const want = sorted(
      Array.from({ length: KEYS }, (_, i) => ({
        id: i + 1,
        owner: owners.get(`${i + 1}.owner`)?.value ?? 'seed',
        balance: writes.filter((w) => w.key === i + 1).reduce((n, w) => n + w.add, 0),
      })),
    );
    await converge(p, 'acct', want, seed);
    const merged = await p.wa.client.query<{ n: number }>(
      `select count(*)::int as n from brabant.conflicts where resolution = 'merge'`,
    );
    console.log(
      `seed ${seed}: ${writes.length} updates of ${KEYS} rows, ${kills} kills; balances exact, ${merged.rows[0]!.n} merged conflicts on wa-1`,
    );
    expect(merged.rows[0]!.n).toBeGreaterThan(0);
  });

  it('column_lww: each column ends with its latest writer’s value', async () => {
    const { seed, rand } = seeded('policy convergence (column_lww)', 'BRABANT_POLICY_CONVERGENCE_SEED');
    const cols = ['a', 'b', 'c'];
    pair = await replicationPair(`create table cl (id int primary key, a text, b text, c text)`);
    const p = pair;
    const procs = await startAll(p);
    await p.vl.client.query(`select brabant.set_conflict_policy('cl', 'column_lww')`);
    await p.vl.client.query(
      `insert into cl select g, 'seed', 'seed', 'seed' from generate_series(1, ${KEYS}) g`,
    );
    await waitConverged(p.sides, 'cl', (r) => r.length === KEYS);
    const { writes, kills } = await writeBothUnderKills(p, procs, seed, rand, async (side, r, i) => {
      const key = 1 + r(KEYS);
      const col = cols[r(cols.length)]!;
      const value = `${side.names.nodeId}:${i}`;
      const ts = await committed(side.client, `update cl set ${col} = $2 where id = $1`, [key, value]);
      return { node: side.names.nodeId, key, col, value, add: 0, ts };
    });
    const last = latest(writes);
    const want = sorted(
      Array.from({ length: KEYS }, (_, i) => ({
        id: i + 1,
        ...Object.fromEntries(cols.map((c) => [c, last.get(`${i + 1}.${c}`)?.value ?? 'seed'])),
      })),
    );
    await converge(p, 'cl', want, seed);
    console.log(
      `seed ${seed}: ${writes.length} column updates of ${KEYS} rows, ${kills} kills; every column its latest writer's`,
    );
  });
});
