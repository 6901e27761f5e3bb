/** `npm run bench`'s command line: its help text and the options it parses (pure). */
import { W6_CLIENTS, W6_THINK_MS } from '../w6.ts';
import type { BenchOptions, System } from './context.ts';

export const ALL_IDS = ['W1', 'W2', 'W2S', 'W3', 'W4', 'W5', 'W6', 'W7', 'W8', 'W9', 'W10'];
export const SYSTEM_NAMES: Record<System, string> = {
  brabant: 'Brabant',
  native: 'native logical replication',
  pglogical: 'pglogical',
  debezium: 'Debezium',
  // a cell of the printed markdown table: the pipe escaped
  pgdump: 'pg_dump \\| pg_restore',
};

export const HELP = `npm run bench [-- [W1 … W10, W2S] [options]]
  W2S               W2 on a secured stack (TLS and authentication on every link) beside the
                    plaintext stack, in the same run: the cost of security
  --runs N          runs of each scenario and system (default 3; the median is quoted)
  --quick           small sizes for a fast look: W1 40,000 rows, W2/W4 10 s, W3 100,000 rows,
                    W5 40,000 rows, W8 100,000 rows, 1 run (each can still be set below)
  --w1-rows N       rows of W1 (default 400000), --w1-tx-rows N rows per transaction (100)
  --seconds N       duration of W2 and W4 (default 60); --w2-seconds / --w4-seconds for one
  --w2-clients N    inserting clients of W2 (default 8); --w2-rate N total rows/s cap (0 = none)
  --w3-rows N       rows of W3's transaction (default 1000000)
  --w4-keys N       hot keys of W4 (default 100); --w4-writers N updating clients per region (2)
  --w4-delta        W4 with qty a delta column for Brabant (increments kept, docs/policies.md)
  --w7-seconds N    W7's W2 load before and after the schema change (default 15; --quick 5)
  --w5-rows N       rows of W5 (default 400000)
  --w8-rows N       rows the peer holds before W8's join (default 1000000; --quick 100000)
  --w9-cut-seconds N  how long W9 cuts the link between the regions (default 60; --quick 15)
  --w10-seconds N   W10's pgbench run, without and then with Brabant (default --seconds)
  --w10-delta       W10 with pgbench's balances declared delta columns (docs/policies.md)
  --poll-ms N       interval of the visibility poller on the target (default 5)
  --systems a,b     only these systems (brabant,native,pglogical,debezium,pgdump)
  --stall-seconds N a Brabant run fails once nothing moved for N s (default 120)
  --service-env K=V extra environment of every capture and apply (repeatable), e.g.
                    --service-env BRABANT_CAPTURE_BATCH_BYTES=262144; shown in the report
  --debezium-set K=V  a setting of W5's Debezium connector (repeatable; default: Debezium's and
                    Connect's own), e.g. --debezium-set max.batch.size=8192 or
                    --debezium-set producer.override.linger.ms=10; shown in the report
  --profile         run capture and apply with --cpu-prof and print where their time went
  --w6-clients N    clients writing one-row transactions through W6's router (default ${W6_CLIENTS})
  --w6-rate N       their total rate in tx/s, paced (default 0: each waits ${W6_THINK_MS} ms between
                    transactions, the router test's load); e.g. --w6-clients 32 --w6-rate 2000
W6 runs two nodes of its own, a switchover there and back, then a kill -9 failover, per run.`;

export function parseArgs(argv: string[]): { ids: string[]; opts: Omit<BenchOptions, 'outDir'> } {
  const ids: string[] = [];
  const flags = new Map<string, string | true>();
  const serviceEnv: Record<string, string> = {};
  const debeziumSettings: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (/^W\d+S?$/i.test(a)) ids.push(a.toUpperCase());
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
    'w6-clients',
    'w6-rate',
    'w8-rows',
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
      ? ['brabant', 'native', 'pglogical', 'debezium', 'pgdump']
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
      w6Clients: Math.max(1, Math.round(num('w6-clients', W6_CLIENTS))),
      w6Rate: num('w6-rate', 0),
      w8Rows: Math.max(1, num('w8-rows', quick ? 100_000 : 1_000_000)),
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
