/**
 * W7 of docs/benchmarks.md, a schema change under load: the W2 load (1-row insert transactions)
 * in both regions, then an ADD COLUMN on A — Brabant's `brabant ddl apply` path (the registry
 * check on a rolled-back dry run, then the change, replicated in A's stream), beside pglogical's
 * `replicate_ddl_command` of the same change under the same load in the same run.
 *
 * Measured: the longest time no client write committed on either region around the change (the
 * stall a lock would cause), from the DDL's commit until every node has the column, and the client
 * transactions that failed.
 */

import {
  compatibilityProblems,
  dryRun,
  incompatible,
  proposals,
  runChange,
  splitStatements,
} from '../services/control/ddl-rollout.ts';
import { SchemaRegistryClient } from '../services/protocol/schema-registry.ts';
import { PglogicalPair } from './lib/baselines.ts';
import { BrabantRun, brabantNames, type Ctx, type System } from './lib/context.ts';
import { RowWriters } from './lib/pg.ts';
import { dropPair, freshPair, HOUR, warmUp, watchProgress } from './lib/runs.ts';
import { bounded, nowMs, sleep, until } from './lib/util.ts';
import type { RunResult, Scenario } from './scenarios.ts';

const CHANGE = 'alter table items add column note text';
const B_IDS = 1_000_000_000;

export const W7: Scenario = {
  id: 'W7',
  title: 'schema change under load',
  systems: ['brabant', 'pglogical'],
  rows: [
    {
      key: 'longestStallMs',
      label: 'longest time no client write committed on either region (change ± load)',
      unit: 'ms',
      better: 'lower',
      baselines: ['pglogical'],
    },
    {
      key: 'appliedEverywhereMs',
      label: 'DDL commit on A → the column on every node',
      unit: 'ms',
      better: 'lower',
      baselines: ['pglogical'],
    },
    {
      key: 'failed',
      label: 'failed client transactions',
      unit: '',
      better: 'lower',
      baselines: ['pglogical'],
    },
  ],
  run: runW7,
};

/** The longest gap between consecutive commits in [from, to] (each region's own clients). */
function longestGap(commits: number[], from: number, to: number): number {
  const times = commits.filter((t) => t >= from && t <= to).sort((x, y) => x - y);
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
  if (times.length > 0) gap = Math.max(gap, times[0]! - from, to - times[times.length - 1]!);
  return times.length === 0 ? to - from : gap;
}

async function hasColumn(db: { client: { query: (s: string) => Promise<{ rowCount: number | null }> } }) {
  const r = await db.client.query(
    `select 1 from information_schema.columns where table_name = 'items' and column_name = 'note'`,
  );
  return r.rowCount === 1;
}

async function runW7(ctx: Ctx, system: System, label: string): Promise<RunResult> {
  const o = ctx.opts;
  const p = await freshPair(ctx, system, 'W7');
  const brabant = new BrabantRun(ctx, label);
  const watch = watchProgress(ctx, system, brabant, p);
  const abort = watch.abort;
  const pgl = new PglogicalPair(p.a, p.b);
  const details: Record<string, unknown> = {
    change: CHANGE,
    clientsPerRegion: o.w2Clients,
    secondsBeforeAndAfter: o.w7Seconds,
  };
  const writers: RowWriters[] = [];
  try {
    const names = [brabantNames('w7a', ctx.regionA), brabantNames('w7b', ctx.regionB)];
    if (system === 'brabant') {
      const topics = names.map((x) => x.topic);
      await brabant.capture(p.a, names[0]!);
      await brabant.capture(p.b, names[1]!);
      await brabant.apply(p.a, topics, names[0]!.nodeId);
      await brabant.apply(p.b, topics, names[1]!.nodeId);
    } else {
      await pgl.createNodes();
      await pgl.bothWays(['default', 'ddl_sql']);
    }
    await warmUp(p.a, p.b, 0, ctx.regionA, abort);
    await warmUp(p.b, p.a, B_IDS - 1, ctx.regionB, abort);
    for (const [db, firstId, region] of [
      [p.a, 1, ctx.regionA],
      [p.b, B_IDS, ctx.regionB],
    ] as const) {
      const w = new RowWriters(db.url, {
        clients: o.w2Clients,
        firstId,
        region,
        ratePerSec: o.w2Rate,
        keepGoing: true,
      });
      writers.push(w);
      w.start();
    }
    await sleep(o.w7Seconds * 1000);
    const sent = nowMs();
    if (system === 'brabant') {
      // what `brabant ddl apply` does: the registry check on a rolled-back dry run, then the change
      const statements = await splitStatements(p.a.client, CHANGE);
      const { tables, types } = await dryRun(p.a.client, statements);
      const registry = new SchemaRegistryClient({ url: ctx.registryUrl, retries: 2 });
      const problems = await compatibilityProblems(registry, proposals(tables, types, names[0]!.topic));
      if (problems.length > 0) throw incompatible(problems);
      details.checkedMs = nowMs() - sent;
      await runChange(p.a.client, statements);
    } else {
      await p.a.client.query('select pglogical.replicate_ddl_command($1, $2::text[])', [
        `${CHANGE.replace('items', 'public.items')}`,
        ['ddl_sql'],
      ]);
    }
    const committed = nowMs();
    details.ddlSeconds = (committed - sent) / 1000;
    await until('the new column on B', () => hasColumn(p.b), { timeoutMs: HOUR, intervalMs: 5, abort });
    const everywhere = nowMs();
    await sleep(o.w7Seconds * 1000);
    const end = nowMs();
    for (const w of writers) await w.stop();
    const stalls = writers.map((w) =>
      longestGap(
        [...w.commits.ids()].map((id) => w.commits.get(id)!),
        sent - 1000,
        end,
      ),
    );
    details.longestStallPerRegionMs = stalls;
    details.rowsWritten = writers.map((w) => w.commits.size);
    // both nodes end with the same rows (the new column included)
    await until(
      'both nodes to hold the same rows',
      async () => {
        const q = 'select count(*)::int as n, count(note)::int as notes from items';
        const [x, y] = [(await p.a.client.query(q)).rows[0], (await p.b.client.query(q)).rows[0]];
        return x.n === y.n && x.notes === y.notes;
      },
      { timeoutMs: HOUR, intervalMs: 200, abort },
    );
    return {
      values: {
        longestStallMs: Math.max(...stalls),
        appliedEverywhereMs: everywhere - committed,
        failed: writers.reduce((n, w) => n + w.failed, 0),
      },
      details,
    };
  } finally {
    for (const w of writers) await w.stop().catch(() => {});
    watch.stop();
    await bounded('stopping Brabant', () => brabant.cleanup());
    await bounded('dropping the pglogical subscriptions', () => pgl.drop());
    await dropPair(p);
  }
}
