/**
 * Delta (counter) columns: pgbench's TPC-B workload run in both regions at once, with the three
 * balance columns declared `delta`, ends with both nodes identical and, on each, the money
 * conserved: sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta) of pgbench_history. Under
 * row last-writer-wins the concurrent increments of one account, teller or branch would be lost.
 * BRABANT_PGBENCH_SCALE and BRABANT_PGBENCH_SECONDS make it larger, BRABANT_PGBENCH_RATE (tx/s per
 * region, 0 = as fast as pgbench goes) heavier (npm run test:pgbench: scale 2, 60 s, unlimited). In
 * npm test each region runs 150 tx/s for 10 s: the conflicts are the same, the catch-up short.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { postgresBinDir } from '../infra/postgres/postgres.ts';
import { type Pair, replicationPair, type Side, waitConverged } from './support/pair.ts';

const run = promisify(execFile);
const SCALE = Number(process.env.BRABANT_PGBENCH_SCALE ?? 1);
const SECONDS = Number(process.env.BRABANT_PGBENCH_SECONDS ?? 10);
const RATE = Number(process.env.BRABANT_PGBENCH_RATE ?? 150);

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

const pgbench = (side: Side, args: string[]) =>
  run(`${postgresBinDir()}/pgbench`, [...args, side.url], { maxBuffer: 16 * 1024 * 1024 });

async function money(side: Side) {
  const r = await side.client.query<{ a: string; t: string; b: string; h: string; n: string }>(
    `select (select sum(abalance) from pgbench_accounts)::text as a, (select sum(tbalance) from pgbench_tellers)::text as t,
            (select sum(bbalance) from pgbench_branches)::text as b, (select coalesce(sum(delta), 0) from pgbench_history)::text as h,
            (select count(*) from pgbench_history)::text as n`,
  );
  return r.rows[0]!;
}

describe('delta columns under pgbench TPC-B in both regions', () => {
  it('keep the money: both nodes identical, every balance sum equal to the history’s', {
    timeout: 300_000 + SECONDS * 10_000,
  }, async () => {
    pair = await replicationPair('select 1');
    const { vl, wa } = pair;
    await Promise.all(
      pair.sides.flatMap((s) => [
        pair!.capture(s).waitForLog(/capture session starting/),
        pair!.apply(s).waitForLog(/apply session running/),
      ]),
    );
    // pgbench's schema and data as pgbench -i makes them, on one node: replicated as DDL and rows
    await pgbench(vl, ['-i', '-s', String(SCALE), '-q']);
    await waitConverged(pair.sides, 'pgbench_branches', (r) => r.length === SCALE, 120_000);
    await waitConverged(pair.sides, 'pgbench_tellers', (r) => r.length === 10 * SCALE, 120_000);
    const accounts = async (s: Side) =>
      Number(
        (
          await s.client
            .query('select count(*) from pgbench_accounts')
            .catch(() => ({ rows: [{ count: -1 }] }))
        ).rows[0].count,
      );
    const deadline = Date.now() + 180_000;
    while ((await accounts(wa)) !== 100_000 * SCALE && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 500));
    expect(await accounts(wa)).toBe(100_000 * SCALE);

    for (const [table, column] of [
      ['pgbench_accounts', 'abalance'],
      ['pgbench_tellers', 'tbalance'],
      ['pgbench_branches', 'bbalance'],
    ])
      await vl.client.query(`select brabant.set_conflict_policy($1, 'delta', array[$2]::name[])`, [
        table,
        column,
      ]);
    const policies = async (s: Side) =>
      (
        await s.client.query(
          `select count(*)::int as n from brabant.conflict_policies where cardinality(delta_columns) > 0`,
        )
      ).rows[0].n;
    while ((await policies(wa)) < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await policies(wa)).toBe(3);

    const [a, b] = await Promise.all(
      [vl, wa].map((s) =>
        pgbench(s, [
          '-n',
          '-c',
          '2',
          '-j',
          '1',
          '-T',
          String(SECONDS),
          ...(RATE > 0 ? ['-R', String(RATE)] : []),
        ]),
      ),
    );
    const tps = [a, b].map((x) => /tps = ([0-9.]+)/.exec(x?.stdout ?? '')?.[1]);
    for (const t of ['pgbench_history', 'pgbench_branches', 'pgbench_tellers'])
      await waitConverged(pair.sides, t, undefined, 300_000);
    await waitConverged(pair.sides, 'pgbench_accounts', undefined, 300_000);
    const sums = await Promise.all(pair.sides.map(money));
    console.log(
      `pgbench TPC-B scale ${SCALE}, ${SECONDS} s per region: tps ${tps.join(' / ')}; ${JSON.stringify(sums[0])}`,
    );
    expect(sums[0]).toEqual(sums[1]);
    const s = sums[0]!;
    expect(Number(s.n)).toBeGreaterThan(0);
    expect([s.a, s.t, s.b]).toEqual([s.h, s.h, s.h]);
    // they were conflicts, merged: the branch row was updated in both regions at once
    const merged = await wa.client.query(
      `select count(*)::int as n from brabant.conflicts where resolution = 'merge' and policy like '%delta%'`,
    );
    expect(merged.rows[0].n).toBeGreaterThan(0);
  });
});
