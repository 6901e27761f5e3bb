/**
 * Scenarios W1–W4 of docs/benchmarks.md. Each run of each system gets fresh databases (and,
 * for Brabant, its own node ids, topics, slots and publications), and cleans up after itself.
 */
import { readFileSync, statSync } from 'node:fs';
import { NativeSubscription, PglogicalPair } from './lib/baselines.ts';
import { type BrabantNames, BrabantRun, brabantNames, type Ctx, type System } from './lib/context.ts';
import {
  adminQuery,
  bulkInsert,
  checksum,
  connect,
  createDb,
  type Db,
  PAYLOAD_SQL,
  RowWriters,
  type Server,
  VisibilityPoller,
  waitAllVisible,
} from './lib/pg.ts';
import { bounded, lagStats, nowMs, StallWatch, sleep, tag, until } from './lib/util.ts';

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
  target?: { value: number; op: '<' | '<='; text: string };
  /** A baseline measured inside the same Brabant run (W6: the same statement sent straight to the node). */
  sameRun?: { key: string; text: string };
}

export interface Scenario {
  id: string;
  title: string;
  systems: System[];
  rows: RowSpec[];
  /** Systems that cannot run this scenario, with the reason shown in the table. */
  unavailable?: Partial<Record<System, string>>;
  /** Set when the scenario cannot run at all: shown as 'n/a (…)' in the table. */
  notImplemented?: string;
  run(ctx: Ctx, system: System, label: string): Promise<RunResult>;
}

const HOUR = 3_600_000;

/** Fresh databases for one run: on the stack's nodes, or on the pglogical nodes. */
async function freshPair(ctx: Ctx, system: System, scenario: string): Promise<{ a: Db; b: Db }> {
  const t = tag();
  let a: Server = ctx.a;
  let b: Server = ctx.b;
  if (system === 'pglogical') {
    if ('unavailable' in ctx.pglogical) throw new Error(ctx.pglogical.unavailable);
    a = ctx.pglogical.a;
    b = ctx.pglogical.b;
  }
  const name = `bench_${scenario.toLowerCase()}_${system.slice(0, 3)}_${t}`;
  const da = await createDb(a, name);
  try {
    return { a: da, b: await createDb(b, name) };
  } catch (err) {
    await da.drop().catch(() => {});
    throw err;
  }
}

async function dropPair(p: { a: Db; b: Db }): Promise<void> {
  await bounded(`dropping database ${p.a.name} on ${p.a.server.id}`, () => p.a.drop());
  await bounded(`dropping database ${p.b.name} on ${p.b.server.id}`, () => p.b.drop());
}

/** Replication was stopped while the rows were written: the target must not have any yet. */
async function assertEmpty(b: Db): Promise<void> {
  const n = Number((await b.client.query('select count(*) from items')).rows[0].count);
  if (n !== 0) throw new Error(`replication was meant to be stopped, but B already holds ${n} rows`);
}

/** Emits a transactional logical message on the source; its LSN is below the commit LSN of that transaction. */
async function marker(db: Db): Promise<bigint> {
  const r = await db.client.query<{ l: string }>(
    "select pg_logical_emit_message(true, 'brabant.bench', 'end')::text as l",
  );
  const [hi, lo] = r.rows[0]!.l.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** Waits until capture has committed to Kafka every event up to (and including) the marker's transaction. */
async function waitCaptured(
  capture: { metric(n: string): Promise<number> },
  lsn: bigint,
  abort: () => string | undefined,
) {
  await until(
    'capture to commit every change to Kafka',
    async () => BigInt(Math.round(await capture.metric('brabant_capture_last_committed_lsn'))) >= lsn,
    { timeoutMs: HOUR, intervalMs: 20, abort },
  );
}

/** Inserts row `id` on the source and waits until the target shows it (pipeline warmed up, schemas registered). */
async function warmUp(a: Db, b: Db, id: number, region: string, abort?: () => string | undefined) {
  await a.client.query(
    `insert into items values ($1::bigint, $2, 0, ${PAYLOAD_SQL('$1::bigint')}, clock_timestamp())`,
    [id, region],
  );
  await until(
    `warm-up row ${id} to reach the target`,
    async () => (await b.client.query('select 1 from items where id = $1', [id])).rowCount === 1,
    { timeoutMs: 120_000, intervalMs: 20, ...(abort ? { abort } : {}) },
  );
}

/**
 * Fails waits of a run early: when a Brabant service died, or when nothing moved for the stall
 * limit (Brabant: events captured, rows applied, rows on B; baselines: the source slots'
 * confirmed positions and rows on B, with a limit of at least 10 minutes).
 */
function watchProgress(ctx: Ctx, system: System, brabant: BrabantRun, p: { a: Db; b: Db }) {
  const probe = async (): Promise<number> => {
    const visible = Number(
      (await p.b.client.query<{ n: string }>('select coalesce(max(id), 0)::text as n from items')).rows[0]!.n,
    );
    if (system === 'brabant') return visible + (await brabant.progress());
    const slots = await adminQuery<{ l: string }>(
      p.a.server,
      "select coalesce(sum(pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')), 0)::text as l from pg_replication_slots where database = $1",
      [p.a.name],
    );
    return visible + Number(slots.rows[0]!.l);
  };
  const limit = ctx.opts.stallSeconds * 1000;
  const watch = new StallWatch(
    system === 'brabant'
      ? 'events captured + rows applied + max id on B'
      : 'slot position on A + max id on B',
    probe,
    system === 'brabant' ? limit : Math.max(limit, 600_000),
  );
  return {
    abort: (): string | undefined =>
      (system === 'brabant' ? brabant.deathReason() : undefined) ?? watch.reason(),
    stop: () => watch.stop(),
  };
}

// ---------------------------------------------------------------------------------------------- W1

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
    try {
      let start: () => Promise<void>;
      if (system === 'brabant') {
        const names = brabantNames('w1', ctx.regionA);
        const capture = await brabant.capture(p.a, names);
        details.writeSeconds = await bulkInsert(p.a.url, 1, n, txRows, ctx.regionA);
        const t = nowMs();
        await waitCaptured(capture, await marker(p.a), abort);
        details.captureDrainSeconds = (nowMs() - t) / 1000;
        start = async () => {
          const svc = await brabant.apply(p.b, [names.topic]);
          details.applyReadySeconds = (nowMs() - t0) / 1000;
          details.applyPeakRssMB = svc.peakRss() / 2 ** 20;
        };
      } else if (system === 'native') {
        await native.create(false);
        details.writeSeconds = await bulkInsert(p.a.url, 1, n, txRows, ctx.regionA);
        await assertEmpty(p.b);
        start = () => native.enable();
      } else {
        await pgl.createNodes();
        const sub = await pgl.subscribe(p.a, p.b);
        await pgl.waitStatus(p.b, sub, 'replicating');
        await pgl.disable(p.b, sub);
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
      return { values: { rowsPerSec: n / seconds }, details };
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
      let services: { peakRss(): number; kind: string }[] = [];
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

// ---------------------------------------------------------------------------------------------- W4

/** `clients` connections updating random hot keys 1..keys until stopped; counts committed updates. */
class HotUpdaters {
  private running = true;
  updates = 0;
  private done: Promise<void> | undefined;
  failure: unknown;

  constructor(
    private readonly url: string,
    private readonly opts: { clients: number; keys: number; region: string },
  ) {}

  start(): void {
    const one = async () => {
      const c = await connect(this.url, 'bench-updater');
      try {
        while (this.running) {
          const key = 1 + Math.floor(Math.random() * this.opts.keys);
          await c.query({
            name: 'hot',
            text: `update items set qty = qty + 1, region = $2, payload = ${PAYLOAD_SQL('random()')}, updated_at = clock_timestamp() where id = $1`,
            values: [key, this.opts.region],
          });
          this.updates++;
        }
      } finally {
        await c.end().catch(() => {});
      }
    };
    this.done = Promise.all(Array.from({ length: this.opts.clients }, one))
      .then(() => {})
      .catch((err: unknown) => {
        this.failure = err;
        this.running = false;
      });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

function logSize(file: string | undefined): number {
  if (file === undefined) return 0;
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Conflict lines pglogical logged for `database` since byte `from` of its server log. */
function pglogicalConflicts(file: string | undefined, from: number, database: string): number {
  if (file === undefined) return 0;
  const text = readFileSync(file).subarray(from).toString();
  return text.split('\n').filter((l) => l.includes(` ${database} `) && /CONFLICT: remote/.test(l)).length;
}

const PROBE_A = 1_000_000_000;
const PROBE_B = 2_000_000_000;

export const W4: Scenario = {
  id: 'W4',
  title: 'conflicts',
  systems: ['brabant', 'pglogical'],
  rows: [
    {
      key: 'conflictsPerSec',
      label: 'conflicts resolved per second (both nodes; first write → converged)',
      unit: '/s',
      better: 'higher',
      baselines: ['pglogical'],
    },
    {
      key: 'lagP50',
      label: 'lag p50 under conflicts (probe rows, both ways)',
      unit: 'ms',
      better: 'lower',
      baselines: ['pglogical'],
    },
    {
      key: 'lagP99',
      label: 'lag p99 under conflicts',
      unit: 'ms',
      better: 'lower',
      baselines: ['pglogical'],
    },
    {
      key: 'converged',
      label: 'converged exactly (same rows and checksum)',
      unit: '',
      better: 'yes',
      baselines: ['pglogical'],
    },
  ],
  async run(ctx, system, label) {
    const o = ctx.opts;
    const p = await freshPair(ctx, system, 'W4');
    const brabant = new BrabantRun(ctx, label);
    const watch = watchProgress(ctx, system, brabant, p);
    const abort = watch.abort;
    const pgl = new PglogicalPair(p.a, p.b);
    const details: Record<string, unknown> = {
      seconds: o.w4Seconds,
      keys: o.w4Keys,
      updatersPerRegion: o.w4Writers,
      probeRowsPerSecPerRegion: 20,
    };
    const running: { stop(): Promise<unknown> }[] = [];
    try {
      let names: BrabantNames[] = [];
      if (system === 'brabant') {
        names = [brabantNames('w4a', ctx.regionA), brabantNames('w4b', ctx.regionB)];
        const topics = names.map((x) => x.topic);
        await brabant.capture(p.a, names[0]!);
        await brabant.capture(p.b, names[1]!);
        await brabant.apply(p.a, topics, names[0]!.nodeId);
        await brabant.apply(p.b, topics, names[1]!.nodeId);
      } else {
        await pgl.createNodes();
        const toB = await pgl.subscribe(p.a, p.b);
        const toA = await pgl.subscribe(p.b, p.a);
        await pgl.waitStatus(p.b, toB, 'replicating');
        await pgl.waitStatus(p.a, toA, 'replicating');
      }
      // The hot rows, written once on A and replicated.
      await p.a.client.query(
        `insert into items select g, $2, 0, ${PAYLOAD_SQL('g')}, clock_timestamp() from generate_series(1, $1::bigint) g`,
        [o.w4Keys, ctx.regionA],
      );
      await until(
        'the hot rows to reach B',
        async () => Number((await p.b.client.query('select count(*) from items')).rows[0].count) === o.w4Keys,
        { timeoutMs: 120_000, intervalMs: 50, abort },
      );
      await warmUp(p.b, p.a, PROBE_B - 1, ctx.regionB, abort);
      const logA = logSize(p.a.server.logFile);
      const logB = logSize(p.b.server.logFile);

      const probeA = new RowWriters(p.a.url, {
        clients: 1,
        firstId: PROBE_A,
        region: ctx.regionA,
        ratePerSec: 20,
      });
      const probeB = new RowWriters(p.b.url, {
        clients: 1,
        firstId: PROBE_B,
        region: ctx.regionB,
        ratePerSec: 20,
      });
      const pollB = new VisibilityPoller(p.b.url, probeA.commits, {
        firstId: PROBE_A,
        endId: PROBE_B - 1,
        intervalMs: o.pollMs,
      });
      const pollA = new VisibilityPoller(p.a.url, probeB.commits, {
        firstId: PROBE_B,
        endId: PROBE_B * 2,
        intervalMs: o.pollMs,
      });
      const hotA = new HotUpdaters(p.a.url, { clients: o.w4Writers, keys: o.w4Keys, region: ctx.regionA });
      const hotB = new HotUpdaters(p.b.url, { clients: o.w4Writers, keys: o.w4Keys, region: ctx.regionB });
      running.push(hotA, hotB, probeA, probeB, pollA, pollB);
      await pollA.start();
      await pollB.start();
      const t0 = nowMs();
      for (const w of [hotA, hotB, probeA, probeB]) w.start();
      const deadline = t0 + o.w4Seconds * 1000;
      while (nowMs() < deadline) {
        const why =
          abort() ??
          [hotA.failure, hotB.failure, probeA.error, probeB.error].find((e) => e !== undefined)?.toString();
        if (why !== undefined) throw new Error(why);
        await sleep(200);
      }
      await hotA.stop();
      await hotB.stop();
      await probeA.stop();
      await probeB.stop();
      const writeSeconds = (nowMs() - t0) / 1000;
      details.updates = hotA.updates + hotB.updates;
      details.updatesPerSec = (hotA.updates + hotB.updates) / writeSeconds;
      const stopped = nowMs();
      let converged = 0;
      try {
        const sum = await until(
          'both nodes to hold identical data',
          async () => {
            const [x, y] = [await checksum(p.a.client), await checksum(p.b.client)];
            return x.rows === y.rows && x.md5 === y.md5 ? x : undefined;
          },
          { timeoutMs: HOUR, intervalMs: 500, abort },
        );
        converged = 1;
        details.convergedSeconds = (nowMs() - stopped) / 1000;
        details.checksum = sum;
      } catch (err) {
        const [x, y] = [await checksum(p.a.client), await checksum(p.b.client)];
        details.diverged = { a: x, b: y, error: String(err) };
      }
      // Every conflict is resolved once both nodes agree: the rate counts from the first write to then.
      const settled = nowMs();
      await until(
        'probe rows to be visible on the other node',
        async () => pollA.caughtUp() && pollB.caughtUp(),
        {
          timeoutMs: 120_000,
          intervalMs: 100,
          abort,
        },
      );
      await pollA.stop();
      await pollB.stop();
      const lags = [...pollA.lags().lags, ...pollB.lags().lags];
      const s = lagStats(lags);
      let conflicts: number;
      if (system === 'brabant') {
        conflicts = 0;
        const kinds: Record<string, number> = {};
        for (const db of [p.a, p.b]) {
          const r = await db.client.query<{ kind: string; resolution: string; n: string }>(
            'select kind, resolution, count(*)::text as n from brabant.conflicts group by 1, 2',
          );
          for (const row of r.rows) {
            conflicts += Number(row.n);
            const k = `${row.kind}/${row.resolution}`;
            kinds[k] = (kinds[k] ?? 0) + Number(row.n);
          }
        }
        details.conflictKinds = kinds;
      } else {
        await sleep(500); // let the log writer flush
        conflicts =
          pglogicalConflicts(p.a.server.logFile, logA, p.a.name) +
          pglogicalConflicts(p.b.server.logFile, logB, p.b.name);
        details.conflictSource = 'CONFLICT lines in the server logs (pglogical.conflict_log_level = log)';
      }
      details.conflicts = conflicts;
      details.conflictsPerWriteSecond = conflicts / writeSeconds;
      details.lagMax = s.max;
      details.probes = s.n;
      return {
        values: {
          conflictsPerSec: conflicts / ((settled - t0) / 1000),
          lagP50: s.p50,
          lagP99: s.p99,
          converged,
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

/** A scenario of docs/benchmarks.md that is not built yet: the table says so instead of a figure. */
function notBuilt(id: string, title: string, why: string): Scenario {
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

export const W7 = notBuilt(
  'W7',
  'schema change under load',
  'not built yet: needs DDL replication (`brabant ddl apply`)',
);
export const W8 = notBuilt('W8', 'node join', 'not built yet: needs `brabant node join`');
export const W10 = notBuilt('W10', 'pgbench TPC-B in both regions', 'not built yet');
