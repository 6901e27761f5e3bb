/**
 * W10 of docs/benchmarks.md: pgbench's own TPC-B (`pgbench -i -s 2`, `-c 4 -j 2 -T N`) against
 * both regions at once, a workload nobody here wrote. The same run measures the same two nodes
 * without Brabant first (each with pgbench's tables of its own), then with capture and apply on
 * both: pgbench's tps with and without, the lag of probe rows both ways while pgbench runs
 * (W4's probes), how long the nodes take to agree after it stops, and that they end identical.
 * The pglogical system runs the same on two pglogical nodes, subscribed both ways with its
 * last_update_wins: active-active PostgreSQL replication with conflict resolution, without Kafka,
 * as the baseline of what replicating TPC-B both ways costs on the same machine in the same run.
 * Every transaction updates one of the two branch rows in both regions, so most applied
 * transactions are conflicts: under row last-writer-wins the balances lose concurrent increments
 * (money not conserved); `--w10-delta` declares them delta columns, which keeps them all.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { postgresBinDir } from '../infra/postgres/postgres.ts';
import { logSize, PglogicalPair, pglogicalConflicts } from './lib/baselines.ts';
import { BrabantRun, brabantNames, type Ctx, type System } from './lib/context.ts';
import { CpuMeter, type CpuPart, runParts } from './lib/cpu.ts';
import type { Db } from './lib/pg.ts';
import { PROBE_A, PROBE_B, probesBothWays } from './lib/probes.ts';
import { dropPair, freshPair, HOUR, warmUp, watchProgress } from './lib/runs.ts';
import { metricSum, type Service } from './lib/services.ts';
import { bounded, lagStats, nowMs, sleep, until } from './lib/util.ts';
import type { Scenario } from './scenarios.ts';

const run = promisify(execFile);
const PGBENCH_TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history'];
const SCALE = '2';
const INIT = ['-i', '-s', SCALE, '-q'];

/** pgbench against one database; its tps (excluding connections) and transactions done. */
async function pgbench(db: Db, args: string[], seconds = 0): Promise<{ tps: number; tx: number }> {
  const { stdout } = await run(`${postgresBinDir()}/pgbench`, [...args, db.url], {
    maxBuffer: 16 * 1024 * 1024,
    timeout: (seconds + 600) * 1000,
    env: { ...process.env, PGAPPNAME: 'bench-w10-pgbench' },
  });
  const tps = /^tps = ([\d.]+)/m.exec(stdout);
  const tx = /number of transactions actually processed: (\d+)/.exec(stdout);
  return { tps: tps ? Number(tps[1]) : 0, tx: tx ? Number(tx[1]) : 0 };
}

/** Both nodes' TPC-B at once, `seconds` long: summed tps and transactions. */
async function bothAtOnce(p: { a: Db; b: Db }, seconds: number) {
  const args = ['-n', '-c', '4', '-j', '2', '-T', String(seconds)];
  const [a, b] = await Promise.all([pgbench(p.a, args, seconds), pgbench(p.b, args, seconds)]);
  return { tps: a.tps + b.tps, tpsA: a.tps, tpsB: b.tps, tx: a.tx + b.tx };
}

/** One text of every pgbench table's rows in order: equal on two nodes when they hold the same data. */
async function pgbenchChecksum(db: Db): Promise<string> {
  const parts: string[] = [];
  for (const t of PGBENCH_TABLES) {
    const r = await db.client.query<{ n: string; h: string }>(
      `select count(*)::text as n, md5(coalesce(string_agg(x::text, '|' order by x::text), '')) as h from ${t} x`,
    );
    parts.push(`${t}:${r.rows[0]!.n}:${r.rows[0]!.h}`);
  }
  return parts.join(' ');
}

/** The CPU figures of the table (when both phases measured one). */
function cpuValues(details: Record<string, unknown>): Record<string, number> {
  const total = (k: string) => (details[k] as { total?: number | null } | undefined)?.total ?? undefined;
  const [w, wo] = [total('cpuMsPerTransaction'), total('cpuMsPerTransactionWithout')];
  return w === undefined || wo === undefined ? {} : { cpuMsPerTx: w, cpuMsPerTxWithout: wo };
}

/** CPU milliseconds per pgbench transaction, per part and in total. */
function perTransaction(cpu: { total: number; parts: Record<string, number> }, tx: number) {
  const ms = (s: number) => (tx > 0 ? Math.round((s * 1e6) / tx) / 1000 : null);
  return {
    total: ms(cpu.total),
    ...Object.fromEntries(Object.entries(cpu.parts).map(([n, s]) => [n, ms(s)])),
  };
}

export const W10: Scenario = {
  id: 'W10',
  title: 'pgbench TPC-B in both regions',
  systems: ['brabant', 'pglogical'],
  rows: [
    {
      key: 'tps',
      label: 'pgbench tps, both regions together (-c 4 -j 2 each)',
      unit: 'tx/s',
      better: 'higher',
      baselines: ['pglogical'],
      sameRun: { key: 'tpsWithout', text: 'same nodes without Brabant' },
    },
    {
      key: 'tpsRatio',
      label: 'tps with Brabant / without (target ≥ 0.7)',
      unit: '×',
      better: 'higher',
      baselines: ['pglogical'],
      target: { value: 0.7, op: '>=', text: '≥ 0.7' },
    },
    {
      key: 'lagP99',
      label: 'lag p99 while pgbench runs (probe rows, both ways; target < 1 s)',
      unit: 'ms',
      better: 'lower',
      baselines: ['pglogical'],
      target: { value: 1000, op: '<', text: '< 1,000 ms' },
    },
    {
      key: 'lagP50',
      label: 'lag p50 while pgbench runs',
      unit: 'ms',
      better: 'lower',
      baselines: ['pglogical'],
    },
    {
      key: 'cpuMsPerTx',
      label:
        'CPU ms per pgbench transaction, pgbench start → nodes identical (both PostgreSQL servers; Brabant: + capture, apply, Kafka, registry)',
      unit: 'ms',
      better: 'lower',
      baselines: ['pglogical'],
      sameRun: { key: 'cpuMsPerTxWithout', text: 'same nodes without Brabant' },
    },
    {
      key: 'drainSeconds',
      label: 'seconds from pgbench’s end until both nodes are identical',
      unit: 's',
      better: 'lower',
      baselines: ['pglogical'],
    },
    {
      key: 'converged',
      label: 'converged exactly (every pgbench table)',
      unit: '',
      better: 'yes',
      baselines: ['pglogical'],
    },
  ],
  async run(ctx, system, label) {
    const seconds = ctx.opts.w10Seconds;
    const details: Record<string, unknown> = {
      seconds,
      scale: Number(SCALE),
      clientsPerRegion: 4,
      threads: 2,
    };
    const without = await withoutReplication(ctx, system, seconds, details);

    const p = await freshPair(ctx, system, 'W10');
    const brabant = new BrabantRun(ctx, label);
    const watch = watchProgress(ctx, system, brabant, p);
    const abort = watch.abort;
    const pgl = new PglogicalPair(p.a, p.b);
    const running: { stop(): Promise<unknown> }[] = [];
    try {
      const replicated =
        system === 'brabant'
          ? await brabantBothWays(ctx, brabant, p, details, abort)
          : await pglogicalBothWays(pgl, p);
      await warmUp(p.b, p.a, PROBE_B - 1, ctx.regionB, abort);
      await warmUp(p.a, p.b, PROBE_A - 1, ctx.regionA, abort);

      const { probeA, probeB, pollA, pollB } = probesBothWays(p, ctx, ctx.opts.pollMs);
      running.push(probeA, probeB, pollA, pollB);
      await pollA.start();
      await pollB.start();
      probeA.start();
      probeB.start();
      const logs = [logSize(p.a.server.logFile), logSize(p.b.server.logFile)];
      // CPU from pgbench's start until both nodes agree: what every part spent on the run
      const cpu = new CpuMeter(replicated.cpuParts).start();
      const withReplication = await bothAtOnce(p, seconds);
      const stopped = nowMs();
      await probeA.stop();
      await probeB.stop();
      const why = abort() ?? [probeA.error, probeB.error].find((e) => e !== undefined)?.toString();
      if (why !== undefined) throw new Error(why);
      details.with = withReplication;
      // the probes' lag while pgbench ran: those written before it stopped
      await until(
        'probe rows to be visible on the other node',
        async () => pollA.caughtUp() && pollB.caughtUp(),
        {
          timeoutMs: HOUR,
          intervalMs: 100,
          abort,
        },
      );
      await pollA.stop();
      await pollB.stop();
      const converged = await waitIdentical(p, abort).then(
        (checksum) => {
          details.checksum = checksum;
          details.cpuMsPerTransaction = perTransaction(cpu.stop(), withReplication.tx);
          return 1;
        },
        (err: unknown) => {
          details.diverged = String(err);
          return 0;
        },
      );
      const drainSeconds = (nowMs() - stopped) / 1000;
      const money = await moneyOf(p.a);
      details.money = money;
      const moneyConserved = money.a === money.h && money.t === money.h && money.b === money.h ? 1 : 0;
      const s = lagStats([...pollA.lags().lags, ...pollB.lags().lags]);
      details.lagMax = s.max;
      details.probes = s.n;
      if (system === 'brabant') {
        details.conflicts = await Promise.all(
          [p.a, p.b].map(async (db) =>
            Number(
              (await db.client.query<{ n: string }>('select count(*)::text as n from brabant.conflicts'))
                .rows[0]!.n,
            ),
          ),
        );
        details.apply = await Promise.all(
          replicated.applies.map((svc, i) => strategies(svc, replicated.nodes[i]!)),
        );
      } else {
        await sleep(500); // let the log writer flush
        details.conflicts = [p.a, p.b].map((db, i) =>
          pglogicalConflicts(db.server.logFile, logs[i]!, db.name),
        );
        details.conflictSource = 'CONFLICT lines in the server logs (pglogical.conflict_log_level = log)';
      }
      return {
        values: {
          tps: withReplication.tps,
          tpsWithout: without.tps,
          tpsRatio: Math.round((withReplication.tps / without.tps) * 1000) / 1000,
          lagP50: s.p50,
          lagP99: s.p99,
          drainSeconds,
          converged,
          moneyConserved,
          ...cpuValues(details),
        },
        details,
      };
    } finally {
      for (const r of running) await r.stop().catch(() => {});
      watch.stop();
      await bounded('stopping Brabant', () => brabant.cleanup());
      await bounded('dropping the pglogical subscriptions', () => pgl.drop());
      await dropPair(p);
    }
  },
};

/** The same two servers without replication, each with pgbench's tables of its own: tps and CPU. */
async function withoutReplication(
  ctx: Ctx,
  system: System,
  seconds: number,
  details: Record<string, unknown>,
) {
  const bare = await freshPair(ctx, system, 'W10n');
  try {
    await Promise.all([pgbench(bare.a, INIT), pgbench(bare.b, INIT)]);
    const bareCpu = new CpuMeter(runParts({ a: bare.a.server, b: bare.b.server })).start();
    const without = await bothAtOnce(bare, seconds);
    details.cpuMsPerTransactionWithout = perTransaction(bareCpu.stop(), without.tx);
    details.without = without;
    return without;
  } finally {
    await dropPair(bare);
  }
}

interface Replicated {
  cpuParts: CpuPart[];
  applies: Service[];
  nodes: string[];
}

/** Capture and apply on both nodes; pgbench's schema and rows made on A reach B by DDL replication and the stream. */
async function brabantBothWays(
  ctx: Ctx,
  brabant: BrabantRun,
  p: { a: Db; b: Db },
  details: Record<string, unknown>,
  abort: () => string | undefined,
): Promise<Replicated> {
  const names = [brabantNames('w10a', ctx.regionA), brabantNames('w10b', ctx.regionB)];
  const topics = names.map((x) => x.topic);
  const captures = [
    await brabant.capture(p.a, names[0]!, { BRABANT_SEQUENCE_INDEX: '0' }),
    await brabant.capture(p.b, names[1]!, { BRABANT_SEQUENCE_INDEX: '1' }),
  ];
  const applies = [
    await brabant.apply(p.a, topics, names[0]!.nodeId),
    await brabant.apply(p.b, topics, names[1]!.nodeId),
  ];
  await pgbench(p.a, INIT);
  await until(
    'pgbench’s tables and rows to reach B',
    async () =>
      (await pgbenchChecksum(p.b).catch(() => 'not yet')) === (await pgbenchChecksum(p.a)) || undefined,
    { timeoutMs: 600_000, intervalMs: 500, abort },
  );
  if (ctx.opts.w10Delta) {
    for (const [table, column] of [
      ['pgbench_accounts', 'abalance'],
      ['pgbench_tellers', 'tbalance'],
      ['pgbench_branches', 'bbalance'],
    ])
      await p.a.client.query(`select brabant.set_conflict_policy($1, 'delta', array[$2]::name[])`, [
        table,
        column,
      ]);
    await until(
      'the delta policies to reach B',
      async () =>
        (
          await p.b.client.query(
            'select 1 from brabant.conflict_policies where cardinality(delta_columns) > 0',
          )
        ).rowCount === 3,
      { timeoutMs: 120_000, intervalMs: 50, abort },
    );
    details.policy = 'abalance, tbalance, bbalance delta';
  }
  return {
    cpuParts: [
      ...runParts(
        { a: p.a.server, b: p.b.server },
        { brokers: ctx.brokers, registryUrl: ctx.registryUrl, services: [] },
      ),
      ...['A', 'B'].flatMap((side, i) => [
        { name: `capture ${side}`, pid: captures[i]!.pid, tree: false },
        { name: `apply ${side}`, pid: applies[i]!.pid, tree: false },
      ]),
    ],
    applies,
    nodes: names.map((n) => n.nodeId),
  };
}

/**
 * pglogical both ways with last_update_wins: pgbench's tables made on both nodes alike (pglogical
 * does not copy them here), keyed ones in the default set, pgbench_history (no key) insert-only.
 */
async function pglogicalBothWays(pgl: PglogicalPair, p: { a: Db; b: Db }): Promise<Replicated> {
  await Promise.all([pgbench(p.a, INIT), pgbench(p.b, INIT)]);
  const [x, y] = [await pgbenchChecksum(p.a), await pgbenchChecksum(p.b)];
  if (x !== y) throw new Error(`pgbench -i made different rows on the two pglogical nodes: ${x} vs ${y}`);
  await pgl.createNodes(
    ['public.items', 'public.pgbench_accounts', 'public.pgbench_branches', 'public.pgbench_tellers'],
    ['public.pgbench_history'],
  );
  await pgl.bothWays(['default', 'default_insert_only']);
  return { cpuParts: runParts({ a: p.a.server, b: p.b.server }), applies: [], nodes: [] };
}

/**
 * Both nodes identical: every TPC-B transaction inserts one history row, so equal counts first
 * (cheap), then the whole tables (a checksum of 200,000 rows every half second would cost the
 * nodes more CPU than the catch-up it waits for).
 */
async function waitIdentical(p: { a: Db; b: Db }, abort: () => string | undefined): Promise<string> {
  const historyRows = async (db: Db) =>
    (await db.client.query<{ n: string }>('select count(*)::text as n from pgbench_history')).rows[0]!.n;
  await until(
    'both nodes to hold as many history rows',
    async () => (await historyRows(p.a)) === (await historyRows(p.b)) || undefined,
    { timeoutMs: HOUR, intervalMs: 200, abort },
  );
  return until(
    'both nodes to hold identical pgbench tables',
    async () => {
      const [x, y] = [await pgbenchChecksum(p.a), await pgbenchChecksum(p.b)];
      return x === y ? x : undefined;
    },
    { timeoutMs: HOUR, intervalMs: 500, abort },
  );
}

/** The sums TPC-B keeps equal without replication: accounts, tellers, branches and history. */
async function moneyOf(db: Db) {
  return (
    await db.client.query<{ a: string; t: string; b: string; h: string }>(
      `select (select sum(abalance) from pgbench_accounts)::text as a, (select sum(tbalance) from pgbench_tellers)::text as t,
              (select sum(bbalance) from pgbench_branches)::text as b, (select coalesce(sum(delta), 0) from pgbench_history)::text as h`,
    )
  ).rows[0]!;
}

/** How an apply took the traffic: transactions by strategy, and round trips per transaction. */
async function strategies(svc: Service, node: string) {
  const text = await svc.metrics();
  const by = (strategy: string) => metricSum(text, 'brabant_apply_strategy_transactions_total', { strategy });
  const tx = by('fast') + by('resolve-ahead') + by('full');
  return {
    node,
    fast: by('fast'),
    resolveAhead: by('resolve-ahead'),
    full: by('full'),
    roundTripsPerTransaction:
      tx === 0 ? null : Math.round((metricSum(text, 'brabant_apply_round_trips_total') / tx) * 100) / 100,
  };
}
