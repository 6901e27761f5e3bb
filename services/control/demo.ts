/**
 * `brabant demo`: the whole system on the local two-region stack. Capture, apply and each
 * region's router run from the stack's topology file (as `brabant start` runs them); the sample
 * table is created in Vlaanderen only and reaches Wallonie by DDL replication, with a `delta`
 * counter column; one writer per region writes through its region's router, both fighting over
 * the same hot rows. Halfway Wallonie adds a column while both write (it reaches Vlaanderen), and
 * Vlaanderen's leader is switched over to another node and back, with no failed write and how
 * long writes waited. At the end: both regions identical, the counter's sum equal to the
 * increments made, the conflicts resolved — and, with --keep, `brabant status` and
 * `brabant dashboard` to look at it all.
 *
 * `--kafka per-region` puts a cluster in each region, and `--cut-link SECONDS` cuts the link
 * between the regions in the middle of the writes: both go on writing, and agree again after the heal.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { linkControl } from '../../infra/link/control.ts';
import { pgClientConfig } from '../../infra/postgres/postgres.ts';
import { waitFor } from '../../infra/processes.ts';
import { startStack, stopRecorded, type Topology } from '../../infra/stack.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { readSecretFile } from '../runtime/security.ts';
import { readTopology, type Topology as TopologyFile, type TopologyNode } from '../runtime/topology.ts';
import { behind } from './catch-up.ts';
import type { controlConfig } from './config.ts';
import { DEMO_ROLE, ensureAppPassword, ensureAppRole } from './demo-role.ts';
import { Writer } from './demo-writers.ts';
import { parseMetrics, samplesOf } from './prometheus-text.ts';
import { DEMO_TOPOLOGY, describeStack, initStackNodes } from './stack-commands.ts';
import { start, stop } from './start-commands.ts';

const HOT_KEYS = 20;
/** Transactions per second each region's writer makes at most (a steady load, not a flood). */
const WRITES_PER_SECOND = 150;
/** The demo's routers' health-check timeout and failover delay (see where they are set). */
const DEMO_CHECK_TIMEOUT_MS = 2000;
const DEMO_DEAD_AFTER_MS = 5000;
const say = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

async function query<R extends pg.QueryResultRow>(
  url: string,
  sql: string,
  values?: unknown[],
): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql, values)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

/** Until every capture and apply of the topology says ready (capture's slot streams, apply reads). */
async function servicesReady(t: TopologyFile): Promise<void> {
  for (const n of t.nodes)
    for (const [kind, port] of [
      ['capture', n.captureMetricsPort],
      ['apply', n.applyMetricsPort],
    ] as const)
      await waitFor(
        async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok || undefined,
        { what: `${kind} of ${n.id} streaming`, timeoutMs: 120_000, intervalMs: 200 },
      );
}

async function switchover(
  controlPort: number,
  to: string,
): Promise<{ from: string; to: string; blockedMs: number }> {
  const res = await fetch(`http://127.0.0.1:${controlPort}/switchover?to=${encodeURIComponent(to)}`, {
    method: 'POST',
    signal: AbortSignal.timeout(120_000),
  });
  const body = (await res.json()) as { from: string; to: string; blockedMs: number; error?: string };
  if (!res.ok) throw new Error(`switchover to ${to}: ${body.error}`);
  return body;
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
  await stop({ home: workDir }).catch(() => 0);
  await stopRecorded(workDir);
  rmSync(workDir, { recursive: true, force: true });
  say(
    `starting the two-region stack in ${workDir} (Kafka: ${opts.kafka === 'shared' ? 'one shared cluster' : 'a cluster per region'}; ports from ${opts.config.basePort + 100})`,
  );
  const stack = await startStack(
    { ...DEMO_TOPOLOGY, kafka: opts.kafka },
    { workDir, basePort: opts.config.basePort + 100, onProgress: say, security: opts.security },
  );
  const writers: Writer[] = [];
  let servicesStarted = false;
  let progress: NodeJS.Timeout | undefined;
  const stopAll = async () => {
    await Promise.all(writers.map((w) => w.stop()));
    if (opts.keep) {
      stack.release();
      return;
    }
    if (servicesStarted) await stop({ home: workDir }).catch(() => 0);
    await stack.stop();
  };
  const onSignal = () => {
    say('interrupted: stopping');
    void stopAll().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  try {
    console.log(`\n${describeStack(stack)}\n`);
    const file = stack.topologyFile!;
    const secured = await secureDemo(stack, file, say);
    const t = readTopology(file);
    const [first, second] = (t.nodes as [TopologyNode, TopologyNode]).map((n) => ({
      ...n,
      postgres: secured.admin(n.postgres),
    })) as [TopologyNode, TopologyNode];
    const router = (region: string) => t.routers.find((r) => r.region === region)!;
    const viaRouter = (region: string) => secured.viaRouter(router(region));
    // A laptop shared with other work misses a 500 ms health check now and then, and the routers'
    // defaults fail over after 1 s of missed checks: the demo shows a planned switchover, so its
    // routers are more patient unless told otherwise (the services inherit this environment).
    process.env.BRABANT_ROUTER_CHECK_TIMEOUT_MS ??= String(DEMO_CHECK_TIMEOUT_MS);
    process.env.BRABANT_ROUTER_DEAD_AFTER_MS ??= String(DEMO_DEAD_AFTER_MS);
    say(
      `routers: a health check times out after ${process.env.BRABANT_ROUTER_CHECK_TIMEOUT_MS} ms, failover after ${process.env.BRABANT_ROUTER_DEAD_AFTER_MS} ms of failed checks (the demo's; BRABANT_ROUTER_CHECK_TIMEOUT_MS and BRABANT_ROUTER_DEAD_AFTER_MS, defaults 500 and 1000)`,
    );
    await start({ home: workDir, topology: file, nodes: [], routers: true, detach: true });
    servicesStarted = true;
    await servicesReady(t);
    say(`capture and apply of ${first.id} and ${second.id}, and a router per region, streaming from ${file}`);

    // The schema is made in Vlaanderen only: DDL replication takes it to Wallonie.
    // (as the application's role through the router: it owns the table, on the peer too)
    await query(
      viaRouter(first.region),
      `create table items (id bigint primary key, region text not null, qty int not null, counter bigint not null default 0,
                           payload text, updated_at timestamptz not null default now());
       select brabant.set_conflict_policy('items', 'delta', array['counter']);`,
    );
    await waitFor(
      async () =>
        (
          await query<{ n: number }>(
            second.postgres,
            `select count(*)::int as n from brabant.conflict_policies where table_name = 'public.items' and 'counter' = any(delta_columns)`,
          ).catch(() => [{ n: 0 }])
        )[0]!.n === 1 || undefined,
      {
        what: 'table items and its delta policy reaching the other region',
        timeoutMs: 60_000,
        intervalMs: 200,
      },
    );
    say(
      `table public.items created in ${first.region} and replicated (DDL) to ${second.region}, with counter under the delta policy (concurrent increments add up; qty stays last-writer-wins)`,
    );
    await query(
      viaRouter(first.region),
      `insert into items select g, $1, 0, 0, 'hot', now() from generate_series(1, ${HOT_KEYS}) g`,
      [first.region],
    );
    await waitFor(
      async () =>
        (await query<{ n: number }>(second.postgres, 'select count(*)::int as n from items'))[0]!.n ===
          HOT_KEYS || undefined,
      { what: 'the hot rows reaching the other region', timeoutMs: 60_000 },
    );
    for (const [i, n] of [first, second].entries())
      writers.push(
        new Writer(viaRouter(n.region), n.region, (i + 1) * 1_000_000, HOT_KEYS, WRITES_PER_SECOND),
      );
    say(
      `${HOT_KEYS} hot rows replicated; writing for ${opts.seconds} s in both regions, each through its router (${writers.map((w, i) => `${w.stats.region} → 127.0.0.1:${router([first, second][i]!.region).port}`).join(', ')}): new rows, and increments of the same hot rows`,
    );
    for (const w of writers) w.start();
    const started = Date.now();
    progress = setInterval(() => void report(t, secured.admin).then((line) => say(line)), 2000);
    const at = (fraction: number) => started + opts.seconds * 1000 * fraction;
    const link = stack.linkUrl === undefined ? undefined : linkControl(stack.linkUrl);
    const cutAt = started + ((opts.seconds - opts.cutLinkSeconds) / 2) * 1000;
    const events = {
      ddl: undefined as { sentAt: number; ms?: number } | undefined,
      moves: [] as { from: string; to: string; blockedMs: number }[],
      cut: opts.cutLinkSeconds > 0 ? ('before' as 'before' | 'cut' | 'healed') : ('healed' as const),
    };
    const columnOn = async (url: string) =>
      (await query(url, `select 1 from pg_attribute where attrelid = 'items'::regclass and attname = 'note'`))
        .length === 1;
    while (Date.now() < started + opts.seconds * 1000) {
      await new Promise((r) => setTimeout(r, 100));
      if (events.ddl === undefined && Date.now() >= at(0.35)) {
        events.ddl = { sentAt: Date.now() };
        await query(viaRouter(second.region), 'alter table items add column note text');
        say(`${second.region} adds a column while both write: alter table items add column note text`);
      } else if (
        events.ddl?.ms === undefined &&
        events.ddl !== undefined &&
        (await columnOn(first.postgres))
      ) {
        events.ddl.ms = Date.now() - events.ddl.sentAt;
        await query(viaRouter(second.region), 'update items set note = $1 where id = 1', [
          `added in ${second.region}`,
        ]);
        say(
          `column note is in ${first.region} ${events.ddl.ms} ms later; ${second.region} writes it, the writers go on`,
        );
      }
      // (a switchover waits until the new leader has applied everything the old one committed: after
      // a cut, under these writes, the catch-up takes longer than the router waits, so not then)
      if (events.moves.length === 0 && opts.cutLinkSeconds === 0 && Date.now() >= at(0.5)) {
        const r = router(first.region);
        writers[0]!.marking = true;
        const there = await switchover(r.controlPort, second.id);
        say(
          `SWITCHOVER of ${first.region}'s writes ${there.from} → ${there.to}: writes waited ${there.blockedMs} ms, none failed`,
        );
        await new Promise((res) => setTimeout(res, 1500));
        const back = await switchover(r.controlPort, first.id);
        writers[0]!.marking = false;
        say(`and back ${back.from} → ${back.to}: writes waited ${back.blockedMs} ms`);
        events.moves.push(there, back);
      }
      if (events.cut === 'before' && Date.now() >= cutAt && link) {
        await link.cut('reset');
        events.cut = 'cut';
        say(
          `LINK CUT between ${first.region} and ${second.region} for ${opts.cutLinkSeconds} s: both regions keep writing into their own cluster`,
        );
      } else if (events.cut === 'cut' && Date.now() >= cutAt + opts.cutLinkSeconds * 1000 && link) {
        await link.heal();
        events.cut = 'healed';
        say('LINK HEALED: each apply catches up with the other region from its cluster');
      }
    }
    if (events.cut === 'cut') await link?.heal();
    const stats = await Promise.all(writers.map((w) => w.stop()));
    writers.length = 0;
    clearInterval(progress);
    const committed = stats.reduce((s, x) => s + x.committed, 0);
    const failed = stats.reduce((s, x) => s + x.failed, 0);
    say(
      `writes done: ${stats.map((s) => `${s.committed} transactions in ${s.region}`).join(', ')} (${(committed / ((Date.now() - started) / 1000)).toFixed(0)}/s), ${failed} failed; waiting until both regions agree`,
    );

    const checksum = async (url: string) =>
      (
        await query<{ n: string; h: string; counter: string; qty: string }>(
          url,
          `select count(*)::text as n, md5(coalesce(string_agg(t::text, '|' order by id), '')) as h,
                  (select sum(counter) from items where id <= ${HOT_KEYS})::text as counter,
                  (select sum(qty) from items where id <= ${HOT_KEYS})::text as qty
             from items t`,
        )
      )[0]!;
    if (events.ddl !== undefined && events.ddl.ms === undefined) {
      await waitFor(async () => (await columnOn(first.postgres)) || undefined, {
        what: `the new column reaching ${first.region}`,
        timeoutMs: 120_000,
        intervalMs: 200,
      });
      events.ddl.ms = Date.now() - events.ddl.sentAt;
    }
    if (opts.cutLinkSeconds > 0)
      say(
        '(no switchover with --cut-link: the router moves writes only to a node that has caught up, and the catch-up after the cut outlasts the writes)',
      );
    // the catch-up, as it goes (after a cut it takes a while)
    const nodes = [first, second].map((n) => ({ id: n.id, url: n.postgres }));
    const catchingUp = setInterval(() => {
      void Promise.all([behind(nodes[0]!, nodes[1]!), behind(nodes[1]!, nodes[0]!)]).then((b) =>
        say(`catching up: ${b.filter((x) => x !== undefined).join(', ')}`),
      );
    }, 3000);
    const converged = await waitFor(
      async () => {
        const [x, y] = [await checksum(first.postgres), await checksum(second.postgres)];
        return x.n === y.n && x.h === y.h ? x : undefined;
      },
      { what: 'both regions holding identical data', timeoutMs: 180_000, intervalMs: 500 },
    ).finally(() => clearInterval(catchingUp));
    say(await report(t, secured.admin));
    console.log(`\nBoth regions hold identical data: ${converged.n} rows, checksum ${converged.h}`);
    console.log(
      `  writes through the routers: ${stats.map((s) => `${s.committed} in ${s.region}`).join(', ')}; failed: ${failed}${failed > 0 ? ` (${stats.flatMap((s) => s.errors).join('; ')})` : ''}`,
    );
    const [there, back] = events.moves;
    if (there && back)
      console.log(
        `  switchover of ${first.region}: ${there.from} → ${there.to}, writes waited ${there.blockedMs} ms; back ${back.from} → ${back.to}, ${back.blockedMs} ms (the longest a ${first.region} write took meanwhile: ${stats[0]!.longestMarkedMs} ms)`,
      );
    if (events.ddl?.ms !== undefined)
      console.log(
        `  DDL: column note added in ${second.region} while both wrote, in ${first.region} ${events.ddl.ms} ms later`,
      );
    const exact = Number(converged.counter) === committed;
    console.log(
      `  counter (delta policy): sum ${converged.counter} ${exact ? '=' : '≠'} ${committed} increments made${exact ? '' : ' (NOT EXACT)'}; qty (last writer wins): ${converged.qty} of the ${committed} increments survived the conflicts`,
    );
    for (const n of [first, second]) {
      const kinds = await query<{ kind: string; resolution: string; n: string }>(
        n.postgres,
        'select kind, resolution, count(*)::text as n from brabant.conflicts group by 1, 2 order by 1, 2',
      );
      console.log(
        `  conflicts resolved on ${n.id}: ${kinds.map((k) => `${k.kind}/${k.resolution} ${k.n}`).join(', ') || 'none'}`,
      );
    }
    console.log(
      `  verify yourself: ${secured.psqlPrefix}psql '${t.nodes[0]!.postgres}' -c 'select count(*), sum(counter) from items'`,
    );
    const home = resolve(opts.config.home) === resolve('.brabant') ? '' : `BRABANT_HOME=${opts.config.home} `;
    console.log(
      opts.keep
        ? `\nStill running. Look at it: ${home}brabant status   and   ${home}brabant dashboard   (or --topology ${file});\n` +
            `${home}brabant conflicts, ${home}brabant deadletters. Stop it: BRABANT_HOME=${workDir} brabant stop && BRABANT_HOME=${workDir} brabant down` +
            (secured.psqlPrefix === ''
              ? ''
              : `\n(Secured: these commands log in to the nodes with PGPASSWORD — ${secured.psqlPrefix.trim()} — and reach Kafka and the registry with the stack's credentials; --insecure runs the demo plaintext.)`)
        : '\nRun `brabant demo --keep` to leave it running and look at it with `brabant status` and `brabant dashboard`.',
    );
    return failed === 0 && exact ? 0 : 1;
  } finally {
    clearInterval(progress);
    process.off('SIGINT', onSignal);
    await stopAll();
    say(opts.keep ? `left running (stack in ${workDir})` : 'stack stopped');
  }
}

/**
 * How the demo logs in. Secured (the default): the nodes are set up as `brabant up` does, with
 * the demo's application role (demo-role.ts) as a DDL role; the writers and the demo's DDL go
 * through the routers as that role, over verify-full TLS with SCRAM; the demo's own reads (row
 * counts, checksums, the conflict log) are the superuser's. Passwords go into the URLs this
 * process uses, never into a line it prints. Insecure: everything as postgres, no password.
 */
async function secureDemo(
  stack: Awaited<ReturnType<typeof startStack>>,
  file: string,
  say: (m: string) => void,
): Promise<{
  admin: (url: string) => string;
  viaRouter: (r: { port: number; database: string }) => string;
  psqlPrefix: string;
}> {
  const sec = readTopology(file).security;
  if (stack.security === undefined || sec === undefined)
    return {
      admin: (url) => url,
      viaRouter: (r) => `postgres://postgres@127.0.0.1:${r.port}/${r.database}`,
      psqlPrefix: '',
    };
  const adminPassword = readSecretFile(stack.security.adminPasswordFile, 'the superuser');
  const password = ensureAppPassword(sec, DEMO_ROLE);
  await ensureAppRole(readTopology(file).nodes, adminPassword, DEMO_ROLE, password);
  await initStackNodes(stack, say, undefined, [DEMO_ROLE]);
  say(
    `nodes set up (brabant node init --ddl-roles ${DEMO_ROLE}): the demo writes and runs its DDL as ${DEMO_ROLE}, owner of its table and no superuser, through the routers (TLS, SCRAM)`,
  );
  return {
    admin: (url) => pgClientConfig(url, adminPassword).connectionString!,
    viaRouter: (r) => {
      const u = new URL(`postgres://127.0.0.1:${r.port}/${r.database}`);
      u.username = DEMO_ROLE;
      u.password = encodeURIComponent(password);
      u.searchParams.set('sslmode', 'verify-full');
      u.searchParams.set('sslrootcert', sec.ca);
      return u.toString();
    },
    psqlPrefix: `PGPASSWORD=$(cat ${stack.security.adminPasswordFile}) `,
  };
}

/** One progress line: rows, conflicts and apply lag per node. */
async function report(t: TopologyFile, admin: (url: string) => string): Promise<string> {
  const parts: string[] = [];
  for (const n of t.nodes) {
    const [row] = await query<{ rows: string; conflicts: string }>(
      admin(n.postgres),
      'select (select count(*) from items)::text as rows, (select count(*) from brabant.conflicts)::text as conflicts',
    ).catch(() => [{ rows: '?', conflicts: '?' }]);
    const metrics = await fetch(`http://127.0.0.1:${n.applyMetricsPort}/metrics`)
      .then((r) => r.text())
      .catch(() => '');
    const lags = samplesOf(parseMetrics(metrics), 'brabant_apply_lag_seconds').map(
      (s) => `${(s.value * 1000).toFixed(0)} ms`,
    );
    parts.push(`${n.id}: ${row!.rows} rows, ${row!.conflicts} conflicts, lag ${lags.join('/') || '-'}`);
  }
  return parts.join(' | ');
}
