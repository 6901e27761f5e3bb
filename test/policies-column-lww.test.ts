/**
 * Column-level last-writer-wins: both regions update random columns of a few rows at once; every
 * node ends with, per column, the value of that column's latest writer (row last-writer-wins
 * would lose the concurrent updates of the other columns). Seed printed; BRABANT_COLUMN_SEED
 * replays.
 */
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, type Side, waitConverged } from './support/pair.ts';
import { derived, seeded } from './support/random.ts';

const COLS = ['a', 'b', 'c', 'd'];
const ROWS = 5;
const UPDATES = Number(process.env.BRABANT_COLUMN_UPDATES ?? 150);

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

interface Write {
  id: number;
  col: string;
  value: string;
  ts: bigint;
  node: string;
}

async function update(side: Side, rand: (n: number) => number, n: number): Promise<Write[]> {
  const c: pg.Client = side.client;
  const out: Write[] = [];
  for (let i = 0; i < n; i++) {
    const id = 1 + rand(ROWS);
    const cols = COLS.filter(() => rand(3) === 0);
    if (cols.length === 0) cols.push(COLS[rand(COLS.length)]!);
    const value = `${side.names.nodeId}:${i}`;
    await c.query('begin');
    const xid = (await c.query<{ x: string }>('select txid_current()::text as x')).rows[0]!.x;
    await c.query(`update cl set ${cols.map((col) => `${col} = $1`).join(', ')} where id = $2`, [value, id]);
    await c.query('commit');
    const ts = (
      await c.query<{ us: string }>(
        `select (extract(epoch from pg_xact_commit_timestamp($1::text::xid)) * 1000000)::int8::text as us`,
        [xid],
      )
    ).rows[0]!.us;
    for (const col of cols) out.push({ id, col, value, ts: BigInt(ts), node: side.names.nodeId });
    if (rand(4) === 0) await new Promise((r) => setTimeout(r, 2));
  }
  return out;
}

describe('column-level last-writer-wins', () => {
  it('keeps, per column, the value of its latest writer on every node', { timeout: 240_000 }, async () => {
    const { seed } = seeded('column lww', 'BRABANT_COLUMN_SEED');
    pair = await replicationPair(`create table cl (id int primary key, a text, b text, c text, d text)`);
    const { vl, wa } = pair;
    await Promise.all(
      pair.sides.flatMap((s) => [
        pair!.capture(s).waitForLog(/capture session starting/),
        pair!.apply(s).waitForLog(/apply session running/),
      ]),
    );
    await vl.client.query(`select brabant.set_conflict_policy('cl', 'column_lww')`);
    await vl.client.query(
      `insert into cl select g, 'seed', 'seed', 'seed', 'seed' from generate_series(1, ${ROWS}) g`,
    );
    await waitConverged(pair.sides, 'cl', (r) => r.length === ROWS);
    const policy = await wa.client.query(
      `select rows from brabant.conflict_policies where table_name = 'public.cl'`,
    );
    expect(policy.rows[0].rows).toBe('column_lww');

    const writes = (
      await Promise.all([update(vl, derived(seed, 1), UPDATES), update(wa, derived(seed, 2), UPDATES)])
    ).flat();
    const latest = new Map<string, Write>();
    for (const w of writes) {
      const k = `${w.id}.${w.col}`;
      const cur = latest.get(k);
      if (cur === undefined || w.ts > cur.ts || (w.ts === cur.ts && w.node > cur.node)) latest.set(k, w);
    }
    const expected = Array.from({ length: ROWS }, (_, i) => {
      const row: Record<string, unknown> = { id: i + 1 };
      for (const col of COLS) row[col] = latest.get(`${i + 1}.${col}`)?.value ?? 'seed';
      return row;
    });
    const want = expected.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).sort()))).sort();
    const got = await waitConverged(
      pair.sides,
      'cl',
      (rows) => {
        const norm = rows
          .map((x) => JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(x)).sort())))
          .sort();
        return JSON.stringify(norm) === JSON.stringify(want);
      },
      120_000,
    ).catch(async (err) => {
      throw new Error(`seed ${seed}: ${(err as Error).message}\nwanted ${want.join('\n')}`);
    });
    console.log(
      `seed ${seed}: ${writes.length} column writes from both regions on ${ROWS} rows; every column its latest writer's`,
    );
    expect(got).toHaveLength(ROWS);
  });
});
