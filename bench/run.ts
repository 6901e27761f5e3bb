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
import { ensurePglogicalInstalled, startPglogicalNodes } from './lib/baselines.ts';
import type { BenchOptions, Ctx, System } from './lib/context.ts';
import { ensureDebeziumJars, killAllConnect, stopAllConnect } from './lib/debezium.ts';
import { serverVersion } from './lib/pg.ts';
import { summarizeDir } from './lib/profile.ts';
import { killAllServices, ROOT, stopAllServices } from './lib/services.ts';
import { errorText, median, say } from './lib/util.ts';
import { type RunResult, type Scenario, W1, W2, W3, W8 } from './scenarios.ts';
import { W4 } from './w4.ts';
import { W5 } from './w5.ts';
import { killW6, stopW6, W6, W6_CLIENTS, W6_THINK_MS } from './w6.ts';
import { W7 } from './w7.ts';
import { W9 } from './w9.ts';
import { W10 } from './w10.ts';

const ALL_IDS = ['W1', 'W2', 'W3', 'W4', 'W5', 'W6', 'W7', 'W8', 'W9', 'W10'];
const SYSTEM_NAMES: Record<System, string> = {
  brabant: 'Brabant',
  native: 'native logical replication',
  pglogical: 'pglogical',
  debezium: 'Debezium',
};

const HELP = `npm run bench [-- [W1 … W10] [options]]
  --runs N          runs of each scenario and system (default 3; the median is quoted)
  --quick           small sizes for a fast look: W1 40,000 rows, W2/W4 10 s, W3 100,000 rows,
                    W5 40,000 rows, 1 run (each can still be set below)
  --w1-rows N       rows of W1 (default 400000), --w1-tx-rows N rows per transaction (100)
  --seconds N       duration of W2 and W4 (default 60); --w2-seconds / --w4-seconds for one
  --w2-clients N    inserting clients of W2 (default 8); --w2-rate N total rows/s cap (0 = none)
  --w3-rows N       rows of W3's transaction (default 1000000)
  --w4-keys N       hot keys of W4 (default 100); --w4-writers N updating clients per region (2)
  --w4-delta        W4 with qty a delta column for Brabant (increments kept, docs/policies.md)
  --w7-seconds N    W7's W2 load before and after the schema change (default 15; --quick 5)
  --w5-rows N       rows of W5 (default 400000)
  --w9-cut-seconds N  how long W9 cuts the link between the regions (default 60; --quick 15)
  --w10-seconds N   W10's pgbench run, without and then with Brabant (default --seconds)
  --w10-delta       W10 with pgbench's balances declared delta columns (docs/policies.md)
  --poll-ms N       interval of the visibility poller on the target (default 5)
  --systems a,b     only these systems (brabant,native,pglogical,debezium)
  --stall-seconds N a Brabant run fails once nothing moved for N s (default 120)
  --service-env K=V extra environment of every capture and apply (repeatable), e.g.
                    --service-env BRABANT_CAPTURE_BATCH_BYTES=262144; shown in the report
  --debezium-set K=V  a setting of W5's Debezium connector (repeatable; default: Debezium's and
                    Connect's own), e.g. --debezium-set max.batch.size=8192 or
                    --debezium-set producer.override.linger.ms=10; shown in the report
  --profile         run capture and apply with --cpu-prof and print where their time went
W6 has no options: ${W6_CLIENTS} clients, ${W6_THINK_MS} ms think time, through the router (the router test's load);
two nodes of its own, a switchover there and back, then a kill -9 failover, per run.`;

function parseArgs(argv: string[]): { ids: string[]; opts: Omit<BenchOptions, 'outDir'> } {
  const ids: string[] = [];
  const flags = new Map<string, string | true>();
  const serviceEnv: Record<string, string> = {};
  const debeziumSettings: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (/^W\d+$/i.test(a)) ids.push(a.toUpperCase());
    else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const k = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const v = eq < 0 ? undefined : a.slice(eq + 1);
      const value =
        v ?? (['quick', 'profile', 'help', 'w4-delta', 'w10-delta'].includes(k) ? undefined : argv[++i]);
      if (k === 'service-env') {
        const at = (value ?? '').indexOf('=');
        const ek = at < 0 ? '' : value!.slice(0, at);
        const ev = at < 0 ? undefined : value!.slice(at + 1);
        if (!/^BRABANT_[A-Z0-9_]+$/.test(ek) || ev === undefined)
          throw new Error(`--service-env wants BRABANT_NAME=value, not '${value ?? ''}'`);
        serviceEnv[ek] = ev;
      }
      if (k === 'debezium-set') {
        const at = (value ?? '').indexOf('=');
        if (at <= 0) throw new Error(`--debezium-set wants key=value, not '${value ?? ''}'`);
        debeziumSettings[value!.slice(0, at)] = value!.slice(at + 1);
      }
      if (v !== undefined) flags.set(k, v);
      else if (['quick', 'profile', 'help', 'w4-delta', 'w10-delta'].includes(k)) flags.set(k, true);
      else flags.set(k, value ?? '');
    } else throw new Error(`unknown argument '${a}'\n${HELP}`);
  }
  if (flags.has('help')) {
    console.log(HELP);
    process.exit(0);
  }
  const quick = flags.has('quick');
  const num = (k: string, dflt: number): number => {
    const v = flags.get(k);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} wants a number, not '${String(v)}'`);
    return n;
  };
  const seconds = num('seconds', quick ? 10 : 60);
  const known = new Set([
    'quick',
    'profile',
    'help',
    'runs',
    'w1-rows',
    'w1-tx-rows',
    'seconds',
    'w2-seconds',
    'w4-seconds',
    'w2-clients',
    'w2-rate',
    'w3-rows',
    'w4-keys',
    'w4-writers',
    'w4-delta',
    'w7-seconds',
    'w5-rows',
    'w9-cut-seconds',
    'w10-seconds',
    'w10-delta',
    'poll-ms',
    'systems',
    'stall-seconds',
    'service-env',
    'debezium-set',
  ]);
  for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}\n${HELP}`);
  const systems = new Set<System>(
    (flags.get('systems') === undefined
      ? ['brabant', 'native', 'pglogical', 'debezium']
      : String(flags.get('systems')).split(',')) as System[],
  );
  for (const s of systems)
    if (!(s in SYSTEM_NAMES))
      throw new Error(`--systems: unknown system '${s}' (${Object.keys(SYSTEM_NAMES)})`);
  for (const id of ids) if (!ALL_IDS.includes(id)) throw new Error(`unknown scenario ${id}`);
  return {
    ids: ids.length > 0 ? ALL_IDS.filter((x) => ids.includes(x)) : ALL_IDS,
    opts: {
      runs: Math.max(1, Math.round(num('runs', quick ? 1 : 3))),
      w1Rows: num('w1-rows', quick ? 40_000 : 400_000),
      w1TxRows: Math.max(1, num('w1-tx-rows', 100)),
      w2Seconds: num('w2-seconds', seconds),
      w2Clients: Math.max(1, num('w2-clients', 8)),
      w2Rate: num('w2-rate', 0),
      w3Rows: num('w3-rows', quick ? 100_000 : 1_000_000),
      w4Seconds: num('w4-seconds', seconds),
      w4Keys: Math.max(1, num('w4-keys', 100)),
      w4Writers: Math.max(1, num('w4-writers', 2)),
      w4Delta: flags.has('w4-delta'),
      w7Seconds: Math.max(2, num('w7-seconds', quick ? 5 : 15)),
      w5Rows: num('w5-rows', quick ? 40_000 : 400_000),
      w9CutSeconds: Math.max(1, num('w9-cut-seconds', quick ? 15 : 60)),
      w10Seconds: Math.max(2, num('w10-seconds', seconds)),
      w10Delta: flags.has('w10-delta'),
      pollMs: num('poll-ms', 5),
      systems,
      profile: flags.has('profile'),
      stallSeconds: num('stall-seconds', 120),
      serviceEnv,
      debeziumSettings,
    },
  };
}

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

function tableRows(scenarios: Scenario[], outcomes: ScenarioOutcome[]): TableRow[] {
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
    for (const r of sc.rows) {
      const b = cell(o.systems.brabant, r.key, r.unit, r.better);
      const baselines = r.baselines.length > 0 ? r.baselines : [undefined];
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
  const scenarios: Scenario[] = [W1, W2, W3, W4, W5, W6, W7, W8, W9, W10];
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

  const rows = tableRows(scenarios, outcomes);
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
      `W4 ${opts.w4Keys} keys × ${opts.w4Seconds} s, ${opts.w4Writers} updaters per region; W5 ${opts.w5Rows.toLocaleString('en-US')} rows; ` +
      `W6 ${W6_CLIENTS} clients × 1-row transactions, ${W6_THINK_MS} ms think time, through the router; lag poll every ${opts.pollMs} ms`,
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
