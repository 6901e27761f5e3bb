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
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { initNode, postgresBinDir, type RunningPostgres, startNode } from '../infra/postgres/postgres.ts';
import { freePort, signalGroup } from '../infra/processes.ts';
// The router is loaded when W6 runs (dynamic import below): the other scenarios do not depend on it.
import type { MoveRecord, Router } from '../services/router/router.ts';
import { type BenchOptions, BrabantRun, brabantNames, type Ctx } from './lib/context.ts';
import { createDb, type Db, PAYLOAD_SQL, type Server } from './lib/pg.ts';
import { bounded, nowMs, sleep } from './lib/util.ts';
import type { RowSpec, RunResult, Scenario } from './scenarios.ts';

/** The load of the router test's switchover case: 8 clients, 25 ms between transactions (~280 tx/s here). */
export const W6_CLIENTS = 8;
export const W6_THINK_MS = 25;

/** Clients writing one-row transactions through the router; every commit time and failure is recorded. */
class RouterLoad {
  readonly ok: number[] = [];
  readonly failed: { at: number; error: string }[] = [];
  private running = true;
  private done: Promise<void> | undefined;
  private startedAt = 0;
  private stoppedAt = 0;

  constructor(
    private readonly port: number,
    private readonly database: string,
    private readonly opts: {
      clients: number;
      /** Pause after each transaction (ms), when no rate is set. */
      thinkMs: number;
      /** Total transactions per second of all clients, paced (0: thinkMs instead). */
      ratePerSec: number;
      nextId: () => number;
      region: string;
    },
  ) {}

  start(): void {
    this.startedAt = nowMs();
    const sql = `insert into items values ($1::bigint, $2, ($1::bigint % 1000)::int, ${PAYLOAD_SQL('$1::bigint')}, clock_timestamp())`;
    // paced: each client has its slots, 1/rate × clients apart; after a stall it runs behind and
    // writes without pausing until it catches up (the transactions an open load queued meanwhile)
    const gapMs = this.opts.ratePerSec > 0 ? (1000 * this.opts.clients) / this.opts.ratePerSec : 0;
    const worker = async (n: number) => {
      let c: pg.Client | undefined;
      let due = this.startedAt + (gapMs * n) / this.opts.clients;
      while (this.running) {
        try {
          if (c === undefined) {
            c = new pg.Client({
              host: '127.0.0.1',
              port: this.port,
              user: 'postgres',
              database: this.database,
              connectionTimeoutMillis: 10_000,
              application_name: 'bench-w6',
            });
            c.on('error', () => {});
            await c.connect();
          }
          // unnamed statements: the router pools by transaction, so a client's server changes between them
          await c.query(sql, [this.opts.nextId(), this.opts.region]);
          this.ok.push(nowMs());
          if (gapMs > 0) {
            due += gapMs;
            const wait = due - nowMs();
            if (wait > 0) await sleep(wait);
          } else if (this.opts.thinkMs > 0) await sleep(this.opts.thinkMs);
        } catch (err) {
          this.failed.push({ at: nowMs(), error: (err as Error).message });
          await c?.end().catch(() => {});
          c = undefined;
          // as applications do: a short pause before trying again
          await sleep(100);
        }
      }
      await c?.end().catch(() => {});
    };
    this.done = Promise.all(Array.from({ length: this.opts.clients }, (_, n) => worker(n))).then(() => {});
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    if (this.stoppedAt === 0) this.stoppedAt = nowMs();
  }

  /** Committed transactions per second over the whole load. */
  rate(): number {
    return this.ok.length / (((this.stoppedAt || nowMs()) - this.startedAt) / 1000);
  }

  /** Committed transactions per second between two instants. */
  rateBetween(from: number, to: number): number {
    return this.ok.filter((t) => t >= from && t <= to).length / ((to - from) / 1000);
  }

  /** Longest time without a committed transaction between two instants (ms). */
  maxGap(from: number, to: number): number {
    const ts = this.ok.filter((t) => t >= from && t <= to).sort((a, b) => a - b);
    let gap = 0;
    let prev = from;
    for (const t of [...ts, to]) {
      gap = Math.max(gap, t - prev);
      prev = t;
    }
    return gap;
  }

  /** Failures between two instants, with their distinct messages. */
  failures(from = 0, to = Number.POSITIVE_INFINITY): { count: number; errors: string[] } {
    const f = this.failed.filter((x) => x.at >= from && x.at <= to);
    return { count: f.length, errors: [...new Set(f.map((x) => x.error))].slice(0, 5) };
  }
}

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

const PGBENCH_CLIENTS = 16;
const PGBENCH_SECONDS = 5;

/**
 * pgbench (PostgreSQL's own load generator, a separate C process) running `select 1`
 * transactions: tps. Asynchronous: the router under test runs in this process.
 */
async function pgbench(to: { host: string; port: number; user: string; database: string }): Promise<number> {
  const script = join(tmpdir(), `brabant-w6-pgbench-${process.pid}.sql`);
  writeFileSync(script, 'select 1;\n');
  const args = ['-n', '-f', script, '-c', String(PGBENCH_CLIENTS), '-j', '2', '-T', String(PGBENCH_SECONDS)];
  args.push('-h', to.host, '-p', String(to.port), '-U', to.user, to.database);
  const { stdout: out } = await promisify(execFile)(join(postgresBinDir(), 'pgbench'), args, {
    env: { ...process.env, PGAPPNAME: 'bench-w6-pgbench' },
    timeout: (PGBENCH_SECONDS + 30) * 1000,
  });
  const m = /^tps = ([\d.]+)/m.exec(out);
  if (m === null) throw new Error(`pgbench printed no tps: ${out.slice(-500)}`);
  return Number(m[1]);
}

/** Round trips of `select $1::int` (one-statement transactions) via the router and direct, p50/p99 in ms. */
async function roundTrips(router: pg.ClientConfig, direct: pg.ClientConfig) {
  const clients = { router: new pg.Client(router), direct: new pg.Client(direct) };
  const times: Record<'router' | 'direct', number[]> = { router: [], direct: [] };
  await clients.router.connect();
  await clients.direct.connect();
  try {
    for (const c of Object.values(clients))
      for (let i = 0; i < 200; i++) await c.query('select $1::int', [i]);
    for (let block = 0; block < 4; block++) {
      for (const which of ['router', 'direct'] as const) {
        for (let i = 0; i < 500; i++) {
          const t = nowMs();
          await clients[which].query('select $1::int', [i]);
          times[which].push(nowMs() - t);
        }
      }
    }
  } finally {
    await clients.router.end().catch(() => {});
    await clients.direct.end().catch(() => {});
  }
  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  };
  return {
    router: { p50: pct(times.router, 50), p99: pct(times.router, 99), n: times.router.length },
    direct: { p50: pct(times.direct, 50), p99: pct(times.direct, 99), n: times.direct.length },
  };
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
