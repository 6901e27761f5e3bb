/**
 * W4 of docs/benchmarks.md, conflicts: both regions update the same hot keys (qty = qty + 1 and
 * the other columns) while probe rows measure the lag both ways; conflicts resolved per second,
 * lag, exact convergence. With `--w4-delta`, Brabant runs it once more with qty declared a `delta`
 * column (docs/policies.md): every increment of both regions is then kept, which the row
 * "increments kept" shows beside pglogical's last-update-wins in the same run.
 */
import { logSize, PglogicalPair, pglogicalConflicts } from './lib/baselines.ts';
import { type BrabantNames, BrabantRun, brabantNames } from './lib/context.ts';
import { checksum, connect, PAYLOAD_SQL } from './lib/pg.ts';
import { PROBE_B, probesBothWays } from './lib/probes.ts';
import { dropPair, freshPair, HOUR, warmUp, watchProgress } from './lib/runs.ts';
import { bounded, lagStats, nowMs, sleep, until } from './lib/util.ts';
import type { Scenario } from './scenarios.ts';

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

export const W4: Scenario = {
  id: 'W4',
  title: 'conflicts',
  systems: ['brabant', 'pglogical'],
  rows: [
    {
      key: 'incrementsKept',
      label:
        'increments kept: sum(qty) / updates made (1 = every concurrent increment; Brabant with --w4-delta)',
      unit: '',
      better: 'higher',
      baselines: ['pglogical'],
    },
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
        if (o.w4Delta) {
          // declared on one node; it reaches the other in A's stream like a DDL
          await p.a.client.query(`select brabant.set_conflict_policy('items', 'delta', array['qty'])`);
          await until(
            'the delta policy to reach B',
            async () =>
              (
                await p.b.client.query(
                  `select 1 from brabant.conflict_policies where table_name = 'public.items' and delta_columns = '{qty}'`,
                )
              ).rowCount === 1,
            { timeoutMs: 120_000, intervalMs: 50, abort },
          );
          details.policy = 'items.qty delta';
        }
      } else {
        await pgl.createNodes();
        await pgl.bothWays();
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

      const { probeA, probeB, pollA, pollB } = probesBothWays(p, ctx, o.pollMs);
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
      let incrementsKept = 0;
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
        // the hot rows only (the probe rows carry a qty of their own)
        const qty = Number(
          (await p.a.client.query('select sum(qty)::text as s from items where id <= $1', [o.w4Keys])).rows[0]
            .s,
        );
        details.qtySum = qty;
        incrementsKept = Math.round((qty / (hotA.updates + hotB.updates)) * 10_000) / 10_000;
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
          incrementsKept,
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
