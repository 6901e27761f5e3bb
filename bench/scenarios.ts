import { NativeSubscription, PglogicalPair } from './lib/baselines.ts';
import { type BenchOptions, BrabantRun, brabantNames, type Ctx, type System } from './lib/context.ts';
import { CpuMeter, perMillionRows, runParts } from './lib/cpu.ts';
import { bulkInsert, connect, PAYLOAD_SQL, RowWriters, VisibilityPoller, waitAllVisible } from './lib/pg.ts';
import {
  assertEmpty,
  dropPair,
  freshPair,
  HOUR,
  marker,
  waitCaptured,
  warmUp,
  watchProgress,
} from './lib/runs.ts';
import { bounded, lagStats, nowMs, sleep, until } from './lib/util.ts';

export interface RunResult {
  values: Record<string, number>;
  details: Record<string, unknown>;
}

export interface RowSpec {
  key: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower' | 'yes';
  /** Baselines this row is compared with; none = Brabant only. */
  baselines: System[];
  /** A fixed target instead of a baseline system (W6): shown in the baseline column, met or not. */
  target?: { value: number; op: '<' | '<=' | '>='; text: string };
  /** A baseline measured inside the same Brabant run (W6: the same statement sent straight to the node). */
  sameRun?: { key: string; text: string };
}

export interface Scenario {
  id: string;
  title: string;
  systems: System[];
  rows: RowSpec[];
  /** The rows as this run's options shape them (W6: its load sets the switchover's target), over `rows`. */
  rowsFor?(opts: BenchOptions): RowSpec[];
  /** Systems that cannot run this scenario, with the reason shown in the table. */
  unavailable?: Partial<Record<System, string>>;
  /** Set when the scenario cannot run at all: shown as 'n/a (…)' in the table. */
  notImplemented?: string;
  run(ctx: Ctx, system: System, label: string): Promise<RunResult>;
}

// ---------------------------------------------------------------------------------------------- W1

const CPU_PARTS = 'both PostgreSQL servers; Brabant: + capture, apply, Kafka, registry';

/** Brabant's parts of a run's CPU meter. */
function brabantCpu(ctx: Ctx, services: { kind: string; pid: number }[]) {
  return { brokers: ctx.brokers, registryUrl: ctx.registryUrl, services };
}

export const W1: Scenario = {
  id: 'W1',
  title: 'catch-up',
  systems: ['brabant', 'native', 'pglogical'],
  rows: [
    {
      key: 'rowsPerSec',
      label: 'catch-up rows/s (start → all rows on B)',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['native', 'pglogical'],
    },
    {
      key: 'cpuPerMillion',
      label: `CPU s per 1,000,000 rows, first write → all on B (${CPU_PARTS})`,
      unit: 's',
      better: 'lower',
      baselines: ['native', 'pglogical'],
    },
  ],
  async run(ctx, system, label) {
    const n = ctx.opts.w1Rows;
    const txRows = ctx.opts.w1TxRows;
    const p = await freshPair(ctx, system, 'W1');
    const details: Record<string, unknown> = { rows: n, txRows };
    const brabant = new BrabantRun(ctx, label);
    const watch = watchProgress(ctx, system, brabant, p);
    const abort = watch.abort;
    const native = new NativeSubscription(p.a, p.b);
    const pgl = new PglogicalPair(p.a, p.b);
    let cpu: CpuMeter;
    try {
      let start: () => Promise<void>;
      if (system === 'brabant') {
        const names = brabantNames('w1', ctx.regionA);
        const capture = await brabant.capture(p.a, names);
        cpu = new CpuMeter(runParts({ a: p.a.server, b: p.b.server }, brabantCpu(ctx, [capture]))).start();
        details.writeSeconds = await bulkInsert(p.a.url, 1, n, txRows, ctx.regionA);
        const t = nowMs();
        await waitCaptured(capture, await marker(p.a), abort);
        details.captureDrainSeconds = (nowMs() - t) / 1000;
        start = async () => {
          const svc = await brabant.apply(p.b, [names.topic]);
          cpu.add({ name: 'apply', pid: svc.pid, tree: false });
          details.applyReadySeconds = (nowMs() - t0) / 1000;
          details.applyPeakRssMB = svc.peakRss() / 2 ** 20;
        };
      } else if (system === 'native') {
        await native.create(false);
        cpu = new CpuMeter(runParts({ a: p.a.server, b: p.b.server })).start();
        details.writeSeconds = await bulkInsert(p.a.url, 1, n, txRows, ctx.regionA);
        await assertEmpty(p.b);
        start = () => native.enable();
      } else {
        await pgl.createNodes();
        const sub = await pgl.subscribe(p.a, p.b);
        await pgl.waitStatus(p.b, sub, 'replicating');
        await pgl.disable(p.b, sub);
        cpu = new CpuMeter(runParts({ a: p.a.server, b: p.b.server })).start();
        details.writeSeconds = await bulkInsert(p.a.url, 1, n, txRows, ctx.regionA);
        await assertEmpty(p.b);
        start = () => pgl.enable(p.b, sub);
      }
      let first = 0;
      const t0 = nowMs();
      const visible = waitAllVisible(
        p.b.client,
        { from: 1, count: n },
        { timeoutMs: HOUR, intervalMs: 20, abort, onFirst: (at) => (first = at) },
      );
      // Poll from the start: rows may show before the starter returns.
      const started = start();
      const [all] = await Promise.all([visible, started]);
      const seconds = (all - t0) / 1000;
      details.seconds = seconds;
      details.firstRowSeconds = first > 0 ? (first - t0) / 1000 : null;
      details.steadyRowsPerSec = first > 0 && all > first ? n / ((all - first) / 1000) : null;
      const used = perMillionRows(cpu.stop(), n);
      details.cpuPerMillionRows = used.parts;
      return { values: { rowsPerSec: n / seconds, cpuPerMillion: used.total }, details };
    } finally {
      watch.stop();
      await bounded('stopping Brabant', () => brabant.cleanup());
      await bounded('dropping the subscription', () => native.drop());
      await bounded('dropping the pglogical subscriptions', () => pgl.drop());
      await dropPair(p);
    }
  },
};

// ---------------------------------------------------------------------------------------------- W2

export const W2: Scenario = {
  id: 'W2',
  title: 'live lag',
  systems: ['brabant', 'native'],
  rows: [
    {
      key: 'lagP50',
      label: 'lag p50 (commit on A → visible on B)',
      unit: 'ms',
      better: 'lower',
      baselines: ['native'],
    },
    { key: 'lagP99', label: 'lag p99', unit: 'ms', better: 'lower', baselines: ['native'] },
    { key: 'lagMax', label: 'lag max', unit: 'ms', better: 'lower', baselines: ['native'] },
    {
      key: 'rowsPerSec',
      label: 'rows/s replicated (start → last row on B)',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['native'],
    },
    {
      key: 'cpuPerMillion',
      label: `CPU s per 1,000,000 rows, writes and replication (${CPU_PARTS})`,
      unit: 's',
      better: 'lower',
      baselines: ['native'],
    },
  ],
  async run(ctx, system, label) {
    const p = await freshPair(ctx, system, 'W2');
    const brabant = new BrabantRun(ctx, label);
    const watch = watchProgress(ctx, system, brabant, p);
    const abort = watch.abort;
    const native = new NativeSubscription(p.a, p.b);
    const details: Record<string, unknown> = {
      clients: ctx.opts.w2Clients,
      seconds: ctx.opts.w2Seconds,
      pollMs: ctx.opts.pollMs,
      rateLimit: ctx.opts.w2Rate || null,
    };
    let writers: RowWriters | undefined;
    let poller: VisibilityPoller | undefined;
    try {
      let services: { peakRss(): number; kind: string; pid: number }[] = [];
      if (system === 'brabant') {
        const names = brabantNames('w2', ctx.regionA);
        const capture = await brabant.capture(p.a, names);
        const apply = await brabant.apply(p.b, [names.topic]);
        services = [capture, apply];
      } else {
        await native.create(true);
      }
      await warmUp(p.a, p.b, 0, ctx.regionA, abort);
      writers = new RowWriters(p.a.url, {
        clients: ctx.opts.w2Clients,
        firstId: 1,
        region: ctx.regionA,
        ratePerSec: ctx.opts.w2Rate,
      });
      poller = new VisibilityPoller(p.b.url, writers.commits, {
        firstId: 1,
        endId: Number.MAX_SAFE_INTEGER,
        intervalMs: ctx.opts.pollMs,
      });
      await poller.start();
      const cpu = new CpuMeter(
        runParts(
          { a: p.a.server, b: p.b.server },
          system === 'brabant' ? brabantCpu(ctx, services) : undefined,
        ),
      ).start();
      const t0 = nowMs();
      writers.start();
      const deadline = t0 + ctx.opts.w2Seconds * 1000;
      while (nowMs() < deadline) {
        const why = abort() ?? (writers.error ? String(writers.error) : undefined);
        if (why !== undefined) throw new Error(why);
        await sleep(200);
      }
      const w = await writers.stop();
      details.rowsWritten = w.rows;
      details.writeRowsPerSec = w.rows / w.seconds;
      await until('every row to be visible on B', async () => poller!.caughtUp(), {
        timeoutMs: HOUR,
        intervalMs: 100,
        abort: () => abort() ?? (poller!.error ? String(poller!.error) : undefined),
      });
      const used = perMillionRows(cpu.stop(), w.rows);
      details.cpuPerMillionRows = used.parts;
      await poller.stop();
      const { lags, lastSeen } = poller.lags();
      const s = lagStats(lags);
      details.polls = poller.polls;
      details.drainSeconds = (lastSeen - (t0 + w.seconds * 1000)) / 1000;
      details.lagPerSecond = poller.timeline(t0);
      for (const svc of services) details[`${svc.kind}PeakRssMB`] = svc.peakRss() / 2 ** 20;
      return {
        values: {
          lagP50: s.p50,
          lagP99: s.p99,
          lagMax: s.max,
          rowsPerSec: w.rows / ((lastSeen - t0) / 1000),
          cpuPerMillion: used.total,
        },
        details,
      };
    } finally {
      await writers?.stop().catch(() => {});
      await poller?.stop().catch(() => {});
      watch.stop();
      await bounded('stopping Brabant', () => brabant.cleanup());
      await bounded('dropping the subscription', () => native.drop());
      await dropPair(p);
    }
  },
};

// ---------------------------------------------------------------------------------------------- W3

export const W3: Scenario = {
  id: 'W3',
  title: 'large transaction',
  systems: ['brabant', 'native'],
  rows: [
    {
      key: 'visibleSeconds',
      label: 'commit on A → all rows visible on B',
      unit: 's',
      better: 'lower',
      baselines: ['native'],
    },
    {
      key: 'captureRssMB',
      label: 'peak RSS of capture (VmHWM)',
      unit: 'MiB',
      better: 'lower',
      baselines: [],
    },
    { key: 'applyRssMB', label: 'peak RSS of apply (VmHWM)', unit: 'MiB', better: 'lower', baselines: [] },
  ],
  async run(ctx, system, label) {
    const n = ctx.opts.w3Rows;
    const p = await freshPair(ctx, system, 'W3');
    const brabant = new BrabantRun(ctx, label);
    const watch = watchProgress(ctx, system, brabant, p);
    const abort = watch.abort;
    const native = new NativeSubscription(p.a, p.b);
    const details: Record<string, unknown> = { rows: n };
    try {
      let rss: () => Record<string, number> = () => ({});
      if (system === 'brabant') {
        const names = brabantNames('w3', ctx.regionA);
        const capture = await brabant.capture(p.a, names);
        const apply = await brabant.apply(p.b, [names.topic]);
        rss = () => ({ captureRssMB: capture.peakRss() / 2 ** 20, applyRssMB: apply.peakRss() / 2 ** 20 });
      } else {
        await native.create(true);
      }
      await warmUp(p.a, p.b, 0, ctx.regionA, abort);
      details.rssBeforeMB = rss();
      const c = await connect(p.a.url, 'bench-writer');
      const t0 = nowMs();
      try {
        await c.query(
          `insert into items select g, $2, (g % 1000)::int, ${PAYLOAD_SQL('g')}, clock_timestamp() from generate_series(1, $1::bigint) g`,
          [n, ctx.regionA],
        );
      } finally {
        await c.end().catch(() => {});
      }
      const committed = nowMs();
      details.insertSeconds = (committed - t0) / 1000;
      const all = await waitAllVisible(
        p.b.client,
        { from: 1, count: n },
        { timeoutMs: HOUR, intervalMs: 50, abort },
      );
      return { values: { visibleSeconds: (all - committed) / 1000, ...rss() }, details };
    } finally {
      watch.stop();
      await bounded('stopping Brabant', () => brabant.cleanup());
      await bounded('dropping the subscription', () => native.drop());
      await dropPair(p);
    }
  },
};

/** A scenario of docs/benchmarks.md that is not built yet: the table says so instead of a figure. */
export function notBuilt(id: string, title: string, why: string): Scenario {
  return {
    id,
    title,
    systems: ['brabant'],
    rows: [],
    notImplemented: why,
    run: async () => {
      throw new Error(`${id} is not built: ${why}`);
    },
  };
}
