/**
 * `npm run bench [-- W1 W2 … --runs N --quick …]`: the benchmark table of docs/benchmarks.md.
 * Starts its own stack (Kafka, two PostgreSQL nodes, registry) in .cache/bench-stack, plus two
 * pglogical nodes for that baseline, Kafka Connect with Debezium for W5's (bench/lib/debezium.ts)
 * and two nodes of W6's own for each of its runs, runs every scenario on Brabant and its baselines several
 * times with fresh databases each time, prints one table (medians, ratios, machine, versions)
 * and writes the same as JSON to bench/results/<timestamp>.json. Everything it started is
 * stopped at the end, also on an error or Ctrl-C. `--help` lists the options.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { kafkaVersion } from '../infra/kafka/kafka.ts';
import type { RunningPostgres } from '../infra/postgres/postgres.ts';
import { type Stack, startStack, stopRecorded } from '../infra/stack.ts';
import { parseArgs, SYSTEM_NAMES } from './lib/args.ts';
import { ensurePglogicalInstalled, startPglogicalNodes } from './lib/baselines.ts';
import type { BenchOptions, Ctx, System } from './lib/context.ts';
import { ensureDebeziumJars, killAllConnect, stopAllConnect } from './lib/debezium.ts';
import { serverVersion } from './lib/pg.ts';
import { summarizeDir } from './lib/profile.ts';
import { killAllServices, ROOT, stopAllServices } from './lib/services.ts';
import { errorText, median, say } from './lib/util.ts';
import { type RunResult, type Scenario, W1, W2, W3 } from './scenarios.ts';
import { stopW2S, W2S } from './w2-secured.ts';
import { W4 } from './w4.ts';
import { W5 } from './w5.ts';
import { killW6, stopW6, W6, w6LoadText } from './w6.ts';
import { W7 } from './w7.ts';
import { W8 } from './w8.ts';
import { W9 } from './w9.ts';
import { W10 } from './w10.ts';

interface SystemRuns {
  results: (RunResult | { error: string })[];
  /** Why this system was not run at all. */
  skipped?: string;
}

interface ScenarioOutcome {
  id: string;
  title: string;
  systems: Partial<Record<System, SystemRuns>>;
  /** The scenario as a whole is not run (not implemented). */
  na?: string;
}

function fmt(v: number, unit: string): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (unit === 'rows/s' || unit === 'B/s' || unit === 'B' || unit === 'tx/s')
    return `${Math.round(v).toLocaleString('en-US')} ${unit}`;
  if (unit === 'tx') return `${v} tx`;
  if (unit === 'ms')
    return `${v < 1 ? v.toFixed(3) : v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US')} ms`;
  if (unit === 's') return `${v.toFixed(2)} s`;
  if (unit === 'MiB') return `${Math.round(v)} MiB`;
  if (unit === '/s') return `${v.toFixed(1)}/s`;
  return String(v);
}

/** The median of a metric over a system's runs, as a cell, and the number for ratios. */
function cell(
  runs: SystemRuns | undefined,
  key: string,
  unit: string,
  better: string,
): { text: string; value?: number } {
  if (runs === undefined) return { text: 'not run' };
  if (runs.skipped !== undefined) return { text: runs.skipped };
  const ok = runs.results.filter((r): r is RunResult => 'values' in r);
  const failed = runs.results.filter((r): r is { error: string } => 'error' in r);
  if (ok.length === 0) return { text: `failed: ${failed[0]?.error ?? 'no run'}` };
  const values = ok.map((r) => r.values[key]).filter((v): v is number => v !== undefined);
  const partial =
    failed.length > 0 ? ` (${ok.length}/${runs.results.length} runs ok; failed: ${failed[0]!.error})` : '';
  if (better === 'yes') {
    const yes = values.filter((v) => v === 1).length;
    return { text: `${yes === values.length ? 'yes' : 'NO'} (${yes}/${values.length} runs)${partial}` };
  }
  const m = median(values);
  return { text: `${fmt(m, unit)}${partial}`, value: m };
}

interface TableRow {
  scenario: string;
  measure: string;
  brabant: string;
  baseline: string;
  ratio: string;
  brabantValue?: number;
  baselineValue?: number;
}

function tableRows(scenarios: Scenario[], outcomes: ScenarioOutcome[], opts: BenchOptions): TableRow[] {
  const rows: TableRow[] = [];
  for (const o of outcomes) {
    const sc = scenarios.find((s) => s.id === o.id);
    if (o.na !== undefined || sc === undefined) {
      rows.push({
        scenario: `${o.id} ${o.title}`,
        measure: '—',
        brabant: o.na ?? 'n/a',
        baseline: '—',
        ratio: '—',
      });
      continue;
    }
    for (const r of sc.rowsFor?.(opts) ?? sc.rows) {
      const b = cell(o.systems.brabant, r.key, r.unit, r.better);
      // a row's target or same-run figure first, then one row per baseline system
      const own = r.target !== undefined || r.sameRun !== undefined || r.baselines.length === 0;
      const baselines = [...(own ? [undefined] : []), ...r.baselines];
      for (const base of baselines) {
        const row: TableRow = {
          scenario: `${o.id} ${o.title}`,
          measure: r.label,
          brabant: b.text,
          baseline: '—',
          ratio: '—',
          ...(b.value !== undefined ? { brabantValue: b.value } : {}),
        };
        if (base === undefined && r.target !== undefined) {
          const t = r.target;
          row.baseline = `target ${t.text}`;
          const met = (v: number) =>
            t.op === '<' ? v < t.value : t.op === '<=' ? v <= t.value : v >= t.value;
          const values = (o.systems.brabant?.results ?? [])
            .filter((x): x is RunResult => 'values' in x)
            .map((x) => x.values[r.key])
            .filter((v): v is number => v !== undefined && Number.isFinite(v));
          if (b.value !== undefined && values.length > 0) {
            const runsMet = `${values.filter(met).length}/${values.length} runs met it`;
            const verdict = met(b.value) ? 'met' : 'MISSED';
            row.ratio =
              t.value === 0
                ? `${verdict} (${runsMet})`
                : `${(b.value / t.value).toFixed(2)}× of target: ${verdict} (${runsMet})`;
          }
        }
        if (base === undefined && r.sameRun !== undefined) {
          const x = cell(o.systems.brabant, r.sameRun.key, r.unit, r.better);
          row.baseline = `${r.sameRun.text}: ${x.text}`;
          if (x.value !== undefined) row.baselineValue = x.value;
          if (b.value !== undefined && x.value !== undefined && x.value !== 0)
            row.ratio = `${(b.value / x.value).toFixed(2)}× (${r.better} is better)`;
        }
        if (base !== undefined) {
          const x = cell(o.systems[base], r.key, r.unit, r.better);
          row.baseline = `${SYSTEM_NAMES[base]}: ${x.text}`;
          if (x.value !== undefined) row.baselineValue = x.value;
          if (b.value !== undefined && x.value !== undefined && x.value !== 0 && r.better !== 'yes') {
            const q = b.value / x.value;
            const shown = q >= 100 ? Math.round(q).toLocaleString('en-US') : q.toFixed(2);
            row.ratio = `${shown}× (${r.better} is better)`;
          }
        }
        rows.push(row);
      }
    }
  }
  return rows;
}

function markdown(rows: TableRow[]): string {
  const lines = [
    '| scenario | measure | Brabant | baseline | ratio Brabant ÷ baseline |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.scenario} | ${r.measure} | ${r.brabant} | ${r.baseline} | ${r.ratio} |`.replace(/\n/g, ' '),
    );
  return lines.join('\n');
}

async function main(): Promise<number> {
  const { ids, opts: parsed } = parseArgs(process.argv.slice(2));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(ROOT, 'bench', 'results');
  const outDir = join(resultsDir, stamp);
  mkdirSync(outDir, { recursive: true });
  const opts: BenchOptions = { ...parsed, outDir };
  const scenarios: Scenario[] = [W1, W2, W2S, W3, W4, W5, W6, W7, W8, W9, W10];
  // BRABANT_BENCH_DIR: another folder for the stack, so two benchmark runs can go side by side
  const workDir = process.env.BRABANT_BENCH_DIR ?? join(ROOT, '.cache', 'bench-stack');

  let stack: Stack | undefined;
  const extraNodes: RunningPostgres[] = [];
  const onExit = () => {
    killAllServices();
    killAllConnect();
    killW6();
    for (const n of extraNodes) {
      try {
        process.kill(-n.process.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  process.on('exit', onExit);
  let stopping = false;
  let interrupted = false;
  const stopEverything = async () => {
    if (stopping) return;
    stopping = true;
    await stopAllConnect().catch(() => {});
    await stopW6().catch(() => {});
    await stopW2S().catch(() => {});
    await stopAllServices().catch(() => {});
    for (const n of extraNodes) await n.process.stop().catch(() => {});
    await stack?.stop().catch(() => {});
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = true;
      say(`${sig}: stopping everything the benchmark started`);
      void stopEverything().then(() => process.exit(130));
    });
  }

  const started = new Date();
  const outcomes: ScenarioOutcome[] = [];
  const stalled = new Set<string>();
  const versions: Record<string, string> = { node: process.version, kafka: kafkaVersion() };
  try {
    // A killed earlier run may have left its stack running: stop it and start over.
    await stopRecorded(workDir, say);
    rmSync(workDir, { recursive: true, force: true });
    say(`starting the stack in ${workDir}`);
    stack = await startStack(
      {
        regions: [
          { name: 'vlaanderen', nodes: 1 },
          { name: 'wallonie', nodes: 1 },
        ],
        kafka: 'shared',
      },
      { workDir, basePort: 0, onProgress: (m) => say(m) },
    );
    const [ra, rb] = stack.regions as [Stack['regions'][0], Stack['regions'][0]];
    const na = ra.nodes[0]!;
    const nb = rb.nodes[0]!;
    const ctx: Ctx = {
      stack,
      opts,
      a: { id: na.id, url: na.url, port: na.port, logFile: join(workDir, 'logs', `${na.id}.log`) },
      b: { id: nb.id, url: nb.url, port: nb.port, logFile: join(workDir, 'logs', `${nb.id}.log`) },
      regionA: ra.name,
      regionB: rb.name,
      brokers: ra.kafkaBrokers.join(','),
      registryUrl: stack.registryUrl,
      pglogical: { unavailable: 'not needed by the selected scenarios' },
      debezium: { unavailable: 'not needed by the selected scenarios' },
    };
    versions.postgresql = await serverVersion(ctx.a);
    const wantPglogical =
      opts.systems.has('pglogical') &&
      ids.some((id) => scenarios.find((s) => s.id === id)?.systems.includes('pglogical'));
    if (wantPglogical) {
      const why = ensurePglogicalInstalled();
      if (why !== undefined) ctx.pglogical = { unavailable: why };
      else {
        try {
          say('starting two PostgreSQL nodes with pglogical preloaded (pgl-a, pgl-b)');
          const p = await startPglogicalNodes(workDir, (n) => extraNodes.push(n));
          ctx.pglogical = { a: p.a, b: p.b, version: p.version };
          versions.pglogical = p.version;
        } catch (err) {
          ctx.pglogical = { unavailable: `pglogical nodes did not start: ${errorText(err)}` };
        }
      }
    }

    const wantDebezium =
      opts.systems.has('debezium') &&
      ids.some((id) => scenarios.find((s) => s.id === id)?.systems.includes('debezium'));
    if (wantDebezium) {
      try {
        const d = await ensureDebeziumJars(say);
        ctx.debezium = d;
        versions.debezium = `${d.version} (Kafka Connect ${d.connectVersion} standalone, Java ${d.javaVersion})`;
      } catch (err) {
        // one line, not cut short: it says what to fix
        const why = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 600);
        ctx.debezium = { unavailable: `Debezium baseline unavailable: ${why}` };
        say(ctx.debezium.unavailable);
      }
    }

    for (const id of ids) {
      const sc = scenarios.find((s) => s.id === id)!;
      const outcome: ScenarioOutcome = { id, title: sc.title, systems: {} };
      outcomes.push(outcome);
      if (sc.notImplemented !== undefined) {
        outcome.na = sc.notImplemented;
        continue;
      }
      for (const system of sc.systems) {
        const runs: SystemRuns = { results: [] };
        outcome.systems[system] = runs;
        if (sc.unavailable?.[system] !== undefined) runs.skipped = sc.unavailable[system];
        else if (!opts.systems.has(system)) runs.skipped = 'not run (--systems)';
        else if (system === 'pglogical' && 'unavailable' in ctx.pglogical)
          runs.skipped = `n/a (${ctx.pglogical.unavailable})`;
        else if (system === 'debezium' && 'unavailable' in ctx.debezium)
          runs.skipped = `n/a (${ctx.debezium.unavailable})`;
      }
      for (let run = 1; run <= opts.runs; run++) {
        for (const system of sc.systems) {
          const runs = outcome.systems[system]!;
          if (runs.skipped !== undefined || stalled.has(`${id}/${system}`)) continue;
          if (interrupted) throw new Error('interrupted');
          const label = `${id}-${system}-run${run}`;
          say(`${label}: starting`);
          const t = Date.now();
          try {
            const r = await sc.run(ctx, system, label);
            runs.results.push(r);
            say(
              `${label}: ${Object.entries(r.values)
                .map(([k, v]) => `${k}=${Number.isFinite(v) ? +v.toFixed(2) : v}`)
                .join(' ')} (${((Date.now() - t) / 1000).toFixed(0)} s)`,
            );
          } catch (err) {
            runs.results.push({ error: errorText(err) });
            say(`${label}: FAILED: ${errorText(err)}`);
            // A run that stalled would stall again: do not spend the stall limit on every run.
            if (/no progress for/.test(errorText(err)) && run < opts.runs) {
              runs.results[runs.results.length - 1] = {
                error: `${errorText(err)} (its remaining runs were skipped)`,
              };
              stalled.add(`${id}/${system}`);
              say(`${id} ${system}: the remaining runs are skipped (it stalled)`);
            }
          }
        }
      }
    }
  } finally {
    say('stopping everything the benchmark started');
    await stopEverything();
    process.off('exit', onExit);
  }

  const rows = tableRows(scenarios, outcomes, opts);
  const machine = {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
  };
  const header = [
    `Brabant benchmarks (docs/benchmarks.md), ${started.toISOString()}`,
    `machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB memory; everything on loopback`,
    `versions: PostgreSQL ${versions.postgresql ?? '?'}, Kafka ${versions.kafka}, Node.js ${versions.node}` +
      (versions.pglogical ? `, pglogical ${versions.pglogical}` : '') +
      (versions.debezium ? `, Debezium ${versions.debezium}` : ''),
    `runs: ${opts.runs} per scenario and system (median quoted); W1 ${opts.w1Rows.toLocaleString('en-US')} rows in ${opts.w1TxRows}-row transactions; ` +
      `W2 ${opts.w2Clients} clients × ${opts.w2Seconds} s; W3 ${opts.w3Rows.toLocaleString('en-US')} rows; ` +
      `W4 ${opts.w4Keys} keys × ${opts.w4Seconds} s, ${opts.w4Writers} updaters per region; W5 ${opts.w5Rows.toLocaleString('en-US')} rows; W8 ${opts.w8Rows.toLocaleString('en-US')} rows; ` +
      `W6 ${w6LoadText(opts)}, 1-row transactions through the router; lag poll every ${opts.pollMs} ms`,
    `Brabant settings: ${
      Object.keys(opts.serviceEnv).length === 0
        ? 'defaults'
        : Object.entries(opts.serviceEnv)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')
    }` +
      (Object.keys(opts.debeziumSettings).length === 0
        ? ''
        : `; Debezium settings: ${Object.entries(opts.debeziumSettings)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`),
  ];
  const table = markdown(rows);
  console.log(`\n${header.join('\n')}\n\n${table}\n`);
  const json = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    argv: process.argv.slice(2),
    machine,
    versions,
    options: { ...opts, systems: [...opts.systems] },
    table: rows,
    scenarios: outcomes,
  };
  const file = join(resultsDir, `${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`JSON: ${file}\nlogs: ${join(outDir, 'logs')}`);
  if (opts.profile) {
    try {
      const text = summarizeDir(join(outDir, 'profiles'), ROOT);
      writeFileSync(join(outDir, 'profile-summary.txt'), text);
      console.log(`\nCPU profiles (${join(outDir, 'profiles')}):${text}`);
    } catch (err) {
      console.log(`no CPU profile summary: ${errorText(err)}`);
    }
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
