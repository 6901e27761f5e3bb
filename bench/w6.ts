/**
 * W6, switchover and failover through the router (services/router), as test/router.test.ts does
 * it, measured: two PostgreSQL nodes of this run's own (one per region, since the failover kills
 * one), capture and apply on both replicating each other through the stack's Kafka, the router of
 * the first region in this process (its proxy in front of the leader), and clients writing
 * one-row transactions through it: by default 8 with 25 ms think time (the router test's
 * "~280 tx/s" case); `--w6-clients` and `--w6-rate` (paced, e.g. 32 clients at 2,000 tx/s for
 * issue 18's < 200 ms switchover under ≥ 2,000 tx/s) make it heavier.
 *
 * Per run: a switchover A → B and back B → A under that load (the worse of the two is reported),
 * then kill -9 of the leader's PostgreSQL (failover to B). Reported: the longest time no client
 * transaction committed around each move ("writes blocked", as clients see it), and the client
 * transactions that failed. There is no baseline system: the table compares with the targets of
 * docs/benchmarks.md (< 0.5 s switchover with no failed transaction, < 6 s failover; < 200 ms
 * switchover when the run asks for ≥ 2,000 tx/s).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { initNode, type RunningPostgres, startNode } from '../infra/postgres/postgres.ts';
import { freePort, signalGroup } from '../infra/processes.ts';
// The router is loaded when W6 runs (dynamic import below): the other scenarios do not depend on it.
import type { MoveRecord, Router } from '../services/router/router.ts';
import { type BenchOptions, BrabantRun, brabantNames, type Ctx } from './lib/context.ts';
import { createDb, type Db, type Server } from './lib/pg.ts';
import { PGBENCH_CLIENTS, PGBENCH_SECONDS, pgbench, RouterLoad, roundTrips } from './lib/router-load.ts';
import { bounded, nowMs, sleep } from './lib/util.ts';
import type { RowSpec, RunResult, Scenario } from './scenarios.ts';

/** The load of the router test's switchover case: 8 clients, 25 ms between transactions (~280 tx/s here). */
export const W6_CLIENTS = 8;
export const W6_THINK_MS = 25;

interface OwnNode {
  spec: { name: string; port: number; dataDir: string; logFile: string };
  pg: RunningPostgres;
  server: Server;
  db?: Db;
}

/** Everything a W6 run started outside BrabantRun, for the exit hook (kill) and Ctrl-C (stop). */
const live = new Set<{ nodes: OwnNode[]; router?: Router; routerDir: string }>();

/** Kills the W6 PostgreSQL nodes still running (process exit: synchronous; the router's proxy is in this process). */
export function killW6(): void {
  for (const r of live) for (const n of r.nodes) signalGroup(n.pg.process.pid, 'SIGKILL');
  live.clear();
}

export async function stopW6(): Promise<void> {
  for (const r of [...live]) {
    await r.router?.stop().catch(() => {});
    for (const n of r.nodes) await n.pg.process.stop(5_000).catch(() => {});
  }
  live.clear();
}

function moveSummaries(moves: MoveRecord[]) {
  return moves.map((m) => ({ from: m.from, to: m.to, blockedMs: m.blockedMs, phasesMs: m.phasesMs }));
}

/** The load a W6 run writes through the router, in words (labels, report line). */
export function w6LoadText(o: Pick<BenchOptions, 'w6Clients' | 'w6Rate'>): string {
  return o.w6Rate > 0
    ? `${o.w6Clients} clients paced to ${o.w6Rate.toLocaleString('en-US')} tx/s in all`
    : `${o.w6Clients} clients, ${W6_THINK_MS} ms think time`;
}

/** Issue 18's bar for a switchover under a heavy load: below it, the talk's. */
const HEAVY_LOAD_TX_PER_SEC = 2000;

/** W6's table rows: the switchover's target depends on the load asked for, the failover's bound on the clients. */
function w6Rows(o: Pick<BenchOptions, 'w6Clients' | 'w6Rate'>): RowSpec[] {
  const heavy = o.w6Rate >= HEAVY_LOAD_TX_PER_SEC;
  return [
    {
      key: 'switchoverBlockedMs',
      label: `switchover under load: longest time no client write committed (worse of A → B and B → A; ${w6LoadText(o)})`,
      unit: 'ms',
      better: 'lower',
      baselines: [],
      target: heavy
        ? {
            value: 200,
            op: '<',
            text: `< 200 ms under ≥ ${HEAVY_LOAD_TX_PER_SEC.toLocaleString('en-US')} tx/s (issue 18)`,
          }
        : { value: 500, op: '<', text: '< 500 ms (talk)' },
    },
    {
      key: 'switchoverFailed',
      label: 'switchover: failed client transactions (both moves)',
      unit: 'tx',
      better: 'lower',
      baselines: [],
      target: { value: 0, op: '<=', text: '0 failed (talk)' },
    },
    {
      key: 'failoverBlockedMs',
      label: 'failover (kill -9 of the leader’s PostgreSQL): longest time no client write committed',
      unit: 'ms',
      better: 'lower',
      baselines: [],
      target: { value: 6000, op: '<', text: '< 6,000 ms (talk)' },
    },
    {
      key: 'failoverFailed',
      label: 'failover: failed client transactions',
      unit: 'tx',
      better: 'lower',
      baselines: [],
      target: {
        value: o.w6Clients,
        op: '<=',
        text: `≤ ${o.w6Clients}: only those in flight at the kill (router test’s bound, not a talk figure)`,
      },
    },
    {
      key: 'routerRoundTripP50Ms',
      label:
        'router overhead: round trip of a one-statement transaction (1 client, sequential, 4 × 500, interleaved with the direct ones), p50',
      unit: 'ms',
      better: 'lower',
      baselines: [],
      sameRun: { key: 'directRoundTripP50Ms', text: 'the same straight to the leader (same run)' },
    },
    {
      key: 'routerRoundTripP99Ms',
      label: 'router overhead: the same, p99',
      unit: 'ms',
      better: 'lower',
      baselines: [],
      sameRun: { key: 'directRoundTripP99Ms', text: 'the same straight to the leader (same run)' },
    },
    {
      key: 'routerPgbenchTps',
      label: `router throughput: pgbench, \`select 1\` transactions, ${PGBENCH_CLIENTS} clients, ${PGBENCH_SECONDS} s (pool of 10 server connections)`,
      unit: 'tx/s',
      better: 'higher',
      baselines: [],
      sameRun: { key: 'directPgbenchTps', text: 'the same straight to the leader (same run)' },
    },
    {
      key: 'loadTxPerSec',
      label:
        'load the moves were measured at: client tx/s committed through the router in the second before the first switchover',
      unit: 'tx/s',
      better: 'higher',
      baselines: [],
      ...(heavy
        ? {
            target: {
              value: HEAVY_LOAD_TX_PER_SEC,
              op: '>=' as const,
              text: `≥ ${HEAVY_LOAD_TX_PER_SEC.toLocaleString('en-US')} tx/s (the load issue 18's switchover target asks for)`,
            },
          }
        : {}),
    },
  ];
}

export const W6: Scenario = {
  id: 'W6',
  title: 'switchover / failover',
  systems: ['brabant'],
  rows: w6Rows({ w6Clients: W6_CLIENTS, w6Rate: 0 }),
  rowsFor: w6Rows,
  async run(ctx, _system, label) {
    return runW6(ctx, label);
  },
};

async function runW6(ctx: Ctx, label: string): Promise<RunResult> {
  const base = join(ctx.stack.workDir, 'w6', label);
  rmSync(base, { recursive: true, force: true });
  // PostgreSQL runs as the postgres OS user: every folder on the way must be traversable.
  mkdirSync(base, { recursive: true, mode: 0o755 });
  const logDir = join(ctx.opts.outDir, 'logs', label);
  mkdirSync(logDir, { recursive: true });
  const res: { nodes: OwnNode[]; router?: Router; routerDir: string } = {
    nodes: [],
    routerDir: join(base, 'router'),
  };
  live.add(res);
  const brabant = new BrabantRun(ctx, label);
  const loads: RouterLoad[] = [];
  const details: Record<string, unknown> = {
    clients: ctx.opts.w6Clients,
    thinkMs: ctx.opts.w6Rate > 0 ? 0 : W6_THINK_MS,
    ratePerSec: ctx.opts.w6Rate || null,
    router: { checkMs: 100, checkTimeoutMs: 300, deadAfterMs: 1000, poolSize: 10 },
    serviceEnv: {
      capture: 'BRABANT_CAPTURE_BATCH_MS=5 BRABANT_CAPTURE_HEARTBEAT_MS=200 BRABANT_CAPTURE_RETRY_MAX_MS=500',
      apply: 'BRABANT_APPLY_RETRY_MAX_MS=500',
    },
  };
  try {
    // -- two nodes of this run's own, one per region
    const regions = [ctx.regionA, ctx.regionB];
    for (const [i, name] of ['w6-a', 'w6-b'].entries()) {
      const spec = {
        name,
        port: await freePort(),
        dataDir: join(base, name),
        logFile: join(logDir, `postgres-${name}.log`),
      };
      initNode(spec);
      const running = await startNode(spec);
      const node: OwnNode = {
        spec,
        pg: running,
        server: { id: `${name}(${regions[i]})`, url: running.url, port: running.port, logFile: spec.logFile },
      };
      res.nodes.push(node);
      node.db = await createDb(node.server, 'bench_w6');
    }
    const [a, b] = res.nodes as [OwnNode, OwnNode];
    // -- capture and apply on both, replicating each other (settings of the router test)
    const names = [brabantNames('w6a', ctx.regionA), brabantNames('w6b', ctx.regionB)];
    const topics = names.map((n) => n.topic);
    const captureEnv = {
      BRABANT_CAPTURE_BATCH_MS: '5',
      BRABANT_CAPTURE_HEARTBEAT_MS: '200',
      BRABANT_CAPTURE_RETRY_MAX_MS: '500',
    };
    const applyEnv = { BRABANT_APPLY_RETRY_MAX_MS: '500' };
    await brabant.capture(a.db!, names[0]!, captureEnv);
    await brabant.capture(b.db!, names[1]!, captureEnv);
    const applyA = await brabant.apply(a.db!, topics, names[0]!.nodeId, applyEnv);
    const applyB = await brabant.apply(b.db!, topics, names[1]!.nodeId, applyEnv);
    // replication flows both ways (heartbeats reach the other node) before the router starts
    await applyA.waitForLog(/applying changes of a source node/, 90_000);
    await applyB.waitForLog(/applying changes of a source node/, 90_000);

    // -- the router of region A, in this process (as the router test runs it)
    const { Router } = await import('../services/router/router.ts');
    const routerPort = await freePort();
    const ids = names.map((n) => n.nodeId) as [string, string];
    const router = new Router(
      {
        region: ctx.regionA,
        nodes: [],
        database: 'app',
        port: routerPort,
        controlPort: 0,
        poolSize: 10,
        waitTimeoutMs: 60_000,
        checkMs: 100,
        checkTimeoutMs: 300,
        deadAfterMs: 1000,
        switchoverTimeoutMs: 20_000,
        catchUpTimeoutMs: 60_000,
        logLevel: 'info',
      },
      [
        { id: ids[0], region: ctx.regionA, url: a.db!.url },
        { id: ids[1], region: ctx.regionB, url: b.db!.url },
      ],
      pino({ level: 'info' }, pino.destination({ dest: join(logDir, 'router.log'), sync: true })),
    );
    res.router = router;
    await router.start();
    if (router.currentLeader !== ids[0])
      throw new Error(`router chose ${router.currentLeader}, not ${ids[0]}`);
    details.routerLog = join(logDir, 'router.log');

    // -- the proxy's cost: the same statement through the router and straight to the leader,
    // in alternating blocks so that drift in the machine's load hits both alike
    const rt = await roundTrips(
      { host: '127.0.0.1', port: routerPort, user: 'postgres', database: 'app' },
      { connectionString: a.db!.url },
    );
    details.roundTrips = rt;
    const tps = {
      router: await pgbench({ host: '127.0.0.1', port: routerPort, user: 'postgres', database: 'app' }),
      direct: await pgbench({ host: '127.0.0.1', port: a.pg.port, user: 'postgres', database: 'bench_w6' }),
    };
    details.pgbench = tps;

    let next = 1;
    const newLoad = () => {
      const l = new RouterLoad(routerPort, 'app', {
        clients: ctx.opts.w6Clients,
        thinkMs: W6_THINK_MS,
        ratePerSec: ctx.opts.w6Rate,
        nextId: () => next++,
        region: ctx.regionA,
      });
      loads.push(l);
      l.start();
      return l;
    };
    const abort = () => {
      const why = brabant.deathReason();
      if (why !== undefined) throw new Error(why);
    };

    // -- switchover A → B and back, under load (its rate measured in the second before the first move)
    const sw = newLoad();
    await sleep(2000);
    abort();
    const t0 = nowMs();
    const offered = sw.rateBetween(t0 - 1000, t0);
    const there = await router.switchover(ids[1]);
    const t1 = nowMs();
    await sleep(1000);
    const back = await router.switchover(ids[0]);
    const t2 = nowMs();
    await sleep(500);
    await sw.stop();
    abort();
    const gapThere = sw.maxGap(t0 - 100, t1 + 100);
    const gapBack = sw.maxGap(t1 + 900, t2 + 100);
    const swFailed = sw.failures();
    details.switchover = {
      gapsMs: [gapThere, gapBack],
      moves: moveSummaries([there, back]),
      commits: sw.ok.length,
      failed: swFailed,
      txPerSecBeforeMoves: offered,
      txPerSecWholePhase: sw.rate(),
    };

    // -- failover: kill -9 of the leader's PostgreSQL under the same load
    const fo = newLoad();
    await sleep(2000);
    abort();
    const leaderId = router.currentLeader!;
    const leader = res.nodes[ids.indexOf(leaderId)]!;
    const killedAt = nowMs();
    const offeredFo = fo.rateBetween(killedAt - 1000, killedAt);
    signalGroup(leader.pg.process.pid, 'SIGKILL');
    const deadline = Date.now() + 20_000;
    while (router.currentLeader === leaderId && Date.now() < deadline) await sleep(20);
    const moved = router.currentLeader !== leaderId;
    await sleep(1500);
    await fo.stop();
    if (!moved)
      throw new Error(`the router did not fail over within 20 s of the kill (log ${details.routerLog})`);
    const foEnd = nowMs() - 500;
    const gapFo = fo.maxGap(killedAt - 100, foEnd);
    const foFailed = fo.failures();
    const move = router.history.at(-1)!;
    details.failover = {
      gapMs: gapFo,
      move: { from: move.from, to: move.to, routerBlockedMs: move.blockedMs, lostNode: move.lostNode },
      commits: fo.ok.length,
      failed: foFailed,
      failedAfterKillMs: fo.failed.map((f) => Math.round(f.at - killedAt)),
      txPerSecBeforeKill: offeredFo,
      txPerSecWholePhase: fo.rate(),
    };
    return {
      values: {
        switchoverBlockedMs: Math.max(gapThere, gapBack),
        switchoverFailed: swFailed.count,
        failoverBlockedMs: gapFo,
        failoverFailed: foFailed.count,
        loadTxPerSec: offered,
        failoverLoadTxPerSec: offeredFo,
        routerPgbenchTps: tps.router,
        directPgbenchTps: tps.direct,
        routerRoundTripP50Ms: rt.router.p50,
        routerRoundTripP99Ms: rt.router.p99,
        directRoundTripP50Ms: rt.direct.p50,
        directRoundTripP99Ms: rt.direct.p99,
        routerSwitchoverBlockedMs: Math.max(there.blockedMs, back.blockedMs),
        routerFailoverBlockedMs: move.blockedMs,
      },
      details,
    };
  } finally {
    for (const l of loads) await l.stop().catch(() => {});
    await bounded('stopping the router', async () => res.router?.stop());
    await bounded('stopping Brabant', () => brabant.cleanup());
    for (const n of res.nodes) {
      await n.db?.close();
      await bounded(`stopping PostgreSQL ${n.spec.name}`, () => n.pg.process.stop(10_000));
    }
    live.delete(res);
    rmSync(base, { recursive: true, force: true });
  }
}
