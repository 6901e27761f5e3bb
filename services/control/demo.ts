/**
 * `brabant demo`: the local two-region stack, capture and apply for each node, a sample table,
 * writes in both regions at once (including conflicting updates of the same rows), progress while
 * it runs, and at the end the proof that both regions hold identical data.
 *
 * The services run from the stack's topology file (`--topology FILE --node ID`, the demo's
 * database as an override), as `brabant start` runs them. `--kafka per-region` puts a cluster in
 * each region, and `--cut-link SECONDS` cuts the link between the regions in the middle of the
 * writes: both go on writing, and agree again after the heal.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { linkControl } from '../../infra/link/control.ts';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { freePort, waitFor } from '../../infra/processes.ts';
import { type NodeInfo, startStack, stopRecorded, type Topology } from '../../infra/stack.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { readSecretFile } from '../runtime/security.ts';
import { readTopology } from '../runtime/topology.ts';
import { serviceSecurity } from '../runtime/topology-security.ts';
import type { controlConfig } from './config.ts';
import { type LaunchedService, launch, type ServiceOptions } from './launcher.ts';
import { DEMO_TOPOLOGY, describeStack, initStackNodes } from './stack-commands.ts';

const HOT_KEYS = 20;
const say = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

interface Service {
  name: string;
  proc: LaunchedService;
  metricsPort: number;
}

export async function demo(opts: {
  config: ConfigOf<typeof controlConfig>;
  seconds: number;
  keep: boolean;
  kafka: Topology['kafka'];
  /** Cut the link between the regions this long in the middle of the writes (per-region only). */
  cutLinkSeconds: number;
  security: 'secured' | 'insecure';
}): Promise<number> {
  if (opts.cutLinkSeconds > 0 && opts.kafka !== 'per-region')
    throw new Error(
      '--cut-link needs --kafka per-region: with one shared cluster there is no link between regions to cut',
    );
  if (opts.cutLinkSeconds >= opts.seconds)
    throw new Error(`--cut-link ${opts.cutLinkSeconds} must be shorter than --seconds ${opts.seconds}`);
  const workDir = resolve(opts.config.home, 'demo');
  // The demo's data is disposable: clear what an earlier demo left.
  await stopRecorded(workDir);
  rmSync(workDir, { recursive: true, force: true });
  say(
    `starting the two-region stack in ${workDir} (Kafka: ${opts.kafka === 'shared' ? 'one shared cluster' : 'a cluster per region'}; ports from ${opts.config.basePort + 100})`,
  );
  const stack = await startStack(
    { ...DEMO_TOPOLOGY, kafka: opts.kafka },
    { workDir, basePort: opts.config.basePort + 100, onProgress: say, security: opts.security },
  );
  // a secured stack: the demo's own connections log in as the stack's superuser
  if (stack.security !== undefined)
    process.env.PGPASSWORD = readSecretFile(stack.security.adminPasswordFile, "the stack's superuser");
  const services: Service[] = [];
  const clients: pg.Client[] = [];
  const stopAll = async () => {
    await Promise.all(services.map((s) => s.proc.stop()));
    for (const c of clients) await c.end().catch(() => {});
    if (!opts.keep) await stack.stop();
    else stack.release();
  };
  const onSignal = () => {
    say('interrupted: stopping');
    void stopAll().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  try {
    console.log(`\n${describeStack(stack)}\n`);
    const nodes = stack.regions.flatMap((r) => r.nodes);
    const dbs = new Map<string, pg.Client>();
    for (const n of nodes) {
      const admin = new pg.Client({ connectionString: n.url });
      await admin.connect();
      await admin.query('create database demo');
      await admin.end();
      const c = new pg.Client({ connectionString: withDatabase(n.url, 'demo') });
      await c.connect();
      clients.push(c);
      // The same schema on every node (DDL replication is a later step of Brabant).
      await c.query(
        'create table items (id bigint primary key, region text not null, qty int not null, payload text, updated_at timestamptz not null default now())',
      );
      dbs.set(n.id, c);
    }
    say('sample table public.items created on both nodes');
    // secured: the demo database set up as brabant node init does, for the services' own roles
    await initStackNodes(stack, say, 'demo');
    const logDir = join(workDir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const topology = stack.topologyFile!;
    const security = readTopology(topology).security;
    for (const n of nodes) {
      const demoDb = { id: n.id, postgres: withDatabase(n.url, 'demo') };
      for (const kind of ['capture', 'apply'] as const)
        services.push(
          await startService(kind, n, logDir, topology, {
            pgUrl: serviceSecurity(security, kind, demoDb).pgUrl,
          }),
        );
    }
    say(
      `capture and apply running for ${nodes.map((n) => n.id).join(' and ')} from ${topology} (logs in ${logDir})`,
    );

    // Hot rows both regions will fight over, written once in Vlaanderen and replicated.
    const [first, second] = nodes as [NodeInfo, NodeInfo];
    const a = dbs.get(first.id)!;
    const b = dbs.get(second.id)!;
    await a.query(`insert into items select g, $1, 0, 'hot', now() from generate_series(1, ${HOT_KEYS}) g`, [
      first.region,
    ]);
    await waitFor(
      async () => Number((await b.query('select count(*) from items')).rows[0].count) === HOT_KEYS,
      { what: 'the hot rows reaching the other region', timeoutMs: 60_000 },
    );
    say(
      `${HOT_KEYS} hot rows replicated; now writing in both regions for ${opts.seconds} s (new rows, and updates of the same hot rows)`,
    );

    let writing = true;
    const writer = async (n: NodeInfo, c: pg.Client, base: number) => {
      let i = 0;
      while (writing) {
        i++;
        await c.query('begin');
        await c.query(`insert into items values ($1::bigint, $2, $3, md5($1::text), now())`, [
          base + i,
          n.region,
          i,
        ]);
        await c.query(`update items set qty = qty + 1, region = $2, updated_at = now() where id = $1`, [
          1 + (i % HOT_KEYS),
          n.region,
        ]);
        await c.query('commit');
      }
      return i;
    };
    const started = Date.now();
    let failure: unknown;
    const writers = Promise.all([writer(first, a, 1_000_000), writer(second, b, 2_000_000)]).catch(
      (err: unknown) => {
        failure = err;
        writing = false;
        return [0, 0];
      },
    );
    const progress = setInterval(() => {
      void report(nodes, dbs, services).then((line) => say(line));
    }, 2000);
    const deadline = Date.now() + opts.seconds * 1000;
    const link = stack.linkUrl === undefined ? undefined : linkControl(stack.linkUrl);
    const cutAt = Date.now() + ((opts.seconds - opts.cutLinkSeconds) / 2) * 1000;
    let cutState: 'before' | 'cut' | 'healed' = opts.cutLinkSeconds > 0 ? 'before' : 'healed';
    while (writing && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      if (cutState === 'before' && Date.now() >= cutAt && link) {
        await link.cut('reset');
        cutState = 'cut';
        say(
          `LINK CUT between ${first.region} and ${second.region} for ${opts.cutLinkSeconds} s: both regions keep writing into their own cluster`,
        );
      } else if (cutState === 'cut' && Date.now() >= cutAt + opts.cutLinkSeconds * 1000 && link) {
        await link.heal();
        cutState = 'healed';
        say('LINK HEALED: each apply catches up with the other region from its cluster');
      }
    }
    if (cutState === 'cut') await link?.heal();
    writing = false;
    const counts = await writers;
    clearInterval(progress);
    if (failure !== undefined) throw failure;
    say(
      `writes done: ${counts[0]} transactions in ${first.region}, ${counts[1]} in ${second.region} (${((counts[0] + counts[1]) / ((Date.now() - started) / 1000)).toFixed(0)}/s); waiting until both regions agree`,
    );

    const checksum = async (c: pg.Client) =>
      (
        await c.query<{ n: string; h: string }>(
          `select count(*)::text as n, md5(coalesce(string_agg(t::text, '|' order by id), '')) as h from items t`,
        )
      ).rows[0]!;
    const converged = await waitFor(
      async () => {
        const [x, y] = [await checksum(a), await checksum(b)];
        return x.n === y.n && x.h === y.h ? x : undefined;
      },
      { what: 'both regions holding identical data', timeoutMs: 120_000, intervalMs: 500 },
    );
    say(await report(nodes, dbs, services));
    console.log(`\nBoth regions hold identical data: ${converged.n} rows, checksum ${converged.h}`);
    for (const n of nodes) {
      const kinds = await dbs
        .get(n.id)!
        .query<{ kind: string; resolution: string; n: string }>(
          'select kind, resolution, count(*)::text as n from brabant.conflicts group by 1, 2 order by 1, 2',
        );
      console.log(
        `  conflicts resolved on ${n.id}: ${kinds.rows.map((k) => `${k.kind}/${k.resolution} ${k.n}`).join(', ') || 'none'}`,
      );
    }
    const hot = await a.query<{ id: string; qty: number; region: string }>(
      `select id, qty, region from items where id <= 3 order by id`,
    );
    console.log(
      `  e.g. hot rows (same on both): ${hot.rows.map((r) => `#${r.id} qty ${r.qty} last written in ${r.region}`).join('; ')}`,
    );
    console.log(
      `  verify yourself: psql '${withDatabase(first.url, 'demo')}' -c 'select count(*), md5(string_agg(t::text, $$|$$ order by id)) from items t'`,
    );
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    await stopAll();
    say(opts.keep ? `left running (stop with BRABANT_HOME=${workDir} brabant down)` : 'stack stopped');
  }
}

async function startService(
  kind: 'capture' | 'apply',
  n: NodeInfo,
  logDir: string,
  topology: string,
  overrides: ServiceOptions<'capture' | 'apply'>,
): Promise<Service> {
  const metricsPort = await freePort();
  const logFile = join(logDir, `${kind}-${n.id}.log`);
  const proc = launch(
    kind,
    n.id,
    { ...overrides, metricsPort },
    {
      logFile,
      args: ['--topology', topology, '--node', n.id],
      keepLine: (l) => !l.startsWith('{'),
    },
  );
  void proc.exited.then((code) => {
    if (code !== 0 && code !== null) console.error(`${kind} of ${n.id} exited with ${code}; see ${logFile}`);
  });
  await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok, {
    what: `${kind} of ${n.id}`,
    timeoutMs: 60_000,
    abort: () => proc.deathReason(),
  });
  return { name: `${kind}-${n.id}`, proc, metricsPort };
}

async function report(nodes: NodeInfo[], dbs: Map<string, pg.Client>, services: Service[]): Promise<string> {
  const parts: string[] = [];
  for (const n of nodes) {
    const c = dbs.get(n.id)!;
    const rows = (await c.query<{ n: string }>('select count(*)::text as n from items')).rows[0]!.n;
    const conflicts = (await c.query<{ n: string }>('select count(*)::text as n from brabant.conflicts'))
      .rows[0]!.n;
    const apply = services.find((s) => s.name === `apply-${n.id}`)!;
    const metrics = await fetch(`http://127.0.0.1:${apply.metricsPort}/metrics`)
      .then((r) => r.text())
      .catch(() => '');
    const lags = [...metrics.matchAll(/^brabant_apply_lag_seconds\{origin="([^"]+)"\} ([0-9.e+-]+)$/gm)].map(
      (m) => `${(Number(m[2]) * 1000).toFixed(0)} ms`,
    );
    parts.push(`${n.id}: ${rows} rows, ${conflicts} conflicts, lag ${lags.join('/') || '-'}`);
  }
  return parts.join(' | ');
}
