/**
 * W8 of docs/benchmarks.md, node join: a peer holds N rows (1,000,000; `--w8-rows`, `--quick`
 * 100,000) loaded in 10,000-row transactions before replication was set up, and takes the W2 load
 * (8 clients inserting 1-row transactions) from the moment a new, empty node starts to join from
 * it until the new node has caught up. Measured per system, in the same run on the same servers
 * (the peer on the stack's node A, the new node on B, fresh databases each run):
 *
 * - Brabant: a cluster of its own (a topology file with the peer in one region and the new node
 *   in the other); the peer runs capture and apply, `brabant node join NEW --from PEER` copies
 *   schema and rows in one snapshot, then the new node's capture and apply are started and the
 *   command waits until it caught up.
 * - native logical replication: `create subscription … with (copy_data = true)` on the new node
 *   (the table made there first: native replication copies no schema); the copy is complete when
 *   the table's sync state is past the copy (`f`, `s` or `r` in pg_subscription_rel).
 * - `pg_dump -Fc | pg_restore` into an empty database: a copy only, it never catches up.
 *
 * The initial copy's rows/s is N ÷ (start → copy complete: schema, rows and indexes). Caught up is
 * measured twice: by each system's own verdict (the join command's end: a round of marks in every
 * stream applied within 5 s; native: the table's sync state `r`), and by the load itself: when
 * the last live row that reached the new node more than 1 s after its commit on the peer arrived
 * (a poller on the new node, as in W2), from when on the new node follows the load within a
 * second. The load goes on 5 s past that, then both nodes must hold identical items tables.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { stringify } from 'yaml';
import { postgresBinDir } from '../infra/postgres/postgres.ts';
import type { Ctx, System } from './lib/context.ts';
import {
  adminQuery,
  bulkInsert,
  checksum,
  createDb,
  type Db,
  RowWriters,
  VisibilityPoller,
} from './lib/pg.ts';
import { HOUR } from './lib/runs.ts';
import { ROOT, type Service, startService } from './lib/services.ts';
import { bounded, nowMs, say, tag, until } from './lib/util.ts';
import type { RunResult, Scenario } from './scenarios.ts';

/** A live row later than this after its commit means the new node has not caught up yet. */
const LATE_MS = 1000;
/** The load goes on this long after the new node caught up (so "caught up" is seen to hold). */
const SETTLE_MS = 5000;
const BULK_TX_ROWS = 10_000;

/** The peer with its rows, and the new node's database (empty, or with the items table for native). */
async function peerAndNewNode(ctx: Ctx, system: System, details: Record<string, unknown>) {
  const name = `bench_w8_${system.slice(0, 3)}_${tag()}`;
  const peer = await createDb(ctx.a, name);
  try {
    const n = ctx.opts.w8Rows;
    details.loadSeconds = await bulkInsert(peer.url, 1, n, BULK_TX_ROWS, ctx.regionA);
    await peer.client.query('analyze items');
    details.peerMiB =
      Number((await peer.client.query(`select pg_total_relation_size('items') as b`)).rows[0].b) / 2 ** 20;
    const target = await createDb(ctx.b, name, [], { empty: system !== 'native' });
    return { peer, target };
  } catch (err) {
    await peer.drop().catch(() => {});
    throw err;
  }
}

/** The W2 load on the peer, ids after the preloaded rows, and a poller of them on the new node. */
function liveLoad(ctx: Ctx, peer: Db, target: Db) {
  const firstId = ctx.opts.w8Rows + 1;
  const writers = new RowWriters(peer.url, {
    clients: ctx.opts.w2Clients,
    firstId,
    region: ctx.regionA,
    ratePerSec: ctx.opts.w2Rate,
  });
  const poller = new VisibilityPoller(target.url, writers.commits, {
    firstId,
    endId: Number.MAX_SAFE_INTEGER,
    intervalMs: ctx.opts.pollMs,
  });
  return { writers, poller };
}

/**
 * After the copy: the load goes on until the new node has followed it within LATE_MS for
 * SETTLE_MS, then stops; every committed row must reach the new node. Returns when it caught up.
 */

/** A system's figures: the copy, when it said ready, when the load caught up, and the end state. */
function result(
  rows: number,
  at: { t0: number; copied: number; ready: number },
  f: Awaited<ReturnType<typeof followUntilCaughtUp>>,
  same: number,
  details: Record<string, unknown>,
): RunResult {
  details.liveRows = f.rows;
  details.lagPerSecond = f.lagPerSecond;
  return {
    values: {
      copyRowsPerSec: rows / ((at.copied - at.t0) / 1000),
      copySeconds: (at.copied - at.t0) / 1000,
      readySeconds: (at.ready - at.t0) / 1000,
      caughtUpSeconds: (Math.max(f.caughtUpAt, at.copied) - at.t0) / 1000,
      loadRowsPerSec: f.rows / f.seconds,
      identical: same,
    },
    details,
  };
}

async function followUntilCaughtUp(
  load: ReturnType<typeof liveLoad>,
  t0: number,
  copied: number,
  abort: () => string | undefined,
): Promise<{
  caughtUpAt: number;
  rows: number;
  seconds: number;
  lagPerSecond: ReturnType<VisibilityPoller['timeline']>;
}> {
  const { writers, poller } = load;
  const why = () => abort() ?? (writers.error ? String(writers.error) : undefined) ?? errorOf(poller);
  await until(
    `the new node to follow the load within ${LATE_MS} ms for ${SETTLE_MS / 1000} s`,
    async () => {
      const now = nowMs();
      return (
        poller.lateMissing(LATE_MS, now) === 0 &&
        now - Math.max(poller.lastLateSeen(LATE_MS) ?? 0, copied) > SETTLE_MS
      );
    },
    { timeoutMs: HOUR, intervalMs: 250, abort: why },
  );
  const w = await writers.stop();
  await until('every live row to reach the new node', async () => poller.caughtUp(), {
    timeoutMs: HOUR,
    intervalMs: 100,
    abort: why,
  });
  await poller.stop();
  return {
    lagPerSecond: poller.timeline(t0),
    caughtUpAt: poller.lastLateSeen(LATE_MS) ?? 0,
    rows: w.rows,
    seconds: w.seconds,
  };
}

function errorOf(p: VisibilityPoller): string | undefined {
  return p.error === undefined ? undefined : String(p.error);
}

async function identical(peer: Db, target: Db): Promise<number> {
  const [a, b] = [await checksum(peer.client), await checksum(target.client)];
  return a.rows === b.rows && a.md5 === b.md5 ? 1 : 0;
}

// -------------------------------------------------------------------------------------- Brabant

/** `brabant node join` as a child process: its output kept, a wait for a line, its exit. */
function joinCommand(args: string[], logFile: string) {
  const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'bin', 'brabant.mjs'), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(logFile);
  let out = '';
  const seen: { pattern: RegExp; at: number }[] = [];
  const patterns = [/start capture and apply of/, /built over ([\d,]+) rows/];
  const onData = (c: Buffer) => {
    out += c.toString();
    log.write(c);
    for (const p of patterns)
      if (!seen.some((s) => s.pattern === p) && p.test(out)) seen.push({ pattern: p, at: nowMs() });
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let code: number | null | undefined;
  const done = new Promise<number>((res) =>
    child.once('exit', (c) => {
      code = c ?? 1;
      log.end();
      res(code);
    }),
  );
  return {
    done,
    output: () => out,
    at: (p: RegExp) => seen.find((s) => s.pattern === p)?.at,
    failed: () =>
      code !== undefined && code !== 0 ? `brabant node join exited ${code}: ${out.slice(-600)}` : undefined,
    kill: () => child.kill('SIGKILL'),
    patterns,
  };
}

async function runBrabant(ctx: Ctx, label: string, details: Record<string, unknown>): Promise<RunResult> {
  const { peer, target } = await peerAndNewNode(ctx, 'brabant', details);
  const t = tag();
  const [regionA, regionB] = [`w8a_${t}`, `w8b_${t}`];
  const [peerId, newId] = [`w8p${t}`, `w8j${t}`];
  const logDir = join(ctx.opts.outDir, 'logs', label);
  mkdirSync(logDir, { recursive: true });
  const topologyFile = join(logDir, 'topology.yaml');
  const region = (name: string) => ({ name, kafka: ctx.brokers.split(','), registry: ctx.registryUrl });
  writeFileSync(
    topologyFile,
    stringify({
      regions: [region(regionA), region(regionB)],
      nodes: [
        { id: peerId, region: regionA, postgres: peer.url },
        { id: newId, region: regionB, postgres: target.url },
      ],
    }),
  );
  const services: Service[] = [];
  const start = async (kind: 'capture' | 'apply', id: string, place: number) => {
    const svc = await startService(
      kind,
      id,
      {},
      { ...ctx.opts.serviceEnv, ...(kind === 'capture' ? { BRABANT_SEQUENCE_INDEX: String(place) } : {}) },
      { logDir, args: ['--topology', topologyFile, '--node', id] },
    );
    services.push(svc);
    return svc;
  };
  const load = liveLoad(ctx, peer, target);
  let cli: ReturnType<typeof joinCommand> | undefined;
  const abort = () => services.map((s) => s.deathReason()).find((r) => r !== undefined) ?? cli?.failed();
  try {
    await start('capture', peerId, 0);
    await start('apply', peerId, 0);
    load.writers.start();
    const t0 = nowMs();
    cli = joinCommand(
      ['node', 'join', newId, '--from', peerId, '--topology', topologyFile, '--timeout', '3600'],
      join(logDir, 'join.log'),
    );
    const [copiedLine, builtLine] = cli.patterns as [RegExp, RegExp];
    await until('the join to copy the peer', async () => cli!.at(copiedLine), {
      timeoutMs: HOUR,
      intervalMs: 20,
      abort,
    });
    const copied = cli.at(copiedLine)!;
    details.copiedRows = Number(builtLine.exec(cli.output())?.[1]?.replace(/,/g, '') ?? Number.NaN);
    details.indexesBuiltSeconds = ((cli.at(builtLine) ?? copied) - t0) / 1000;
    await load.poller.start();
    await start('capture', newId, 1);
    await start('apply', newId, 1);
    const code = await cli.done;
    if (code !== 0) throw new Error(cli.failed());
    const ready = nowMs();
    details.joinOutput = cli
      .output()
      .split('\n')
      .filter((l) => !/^copy: |^catch-up: /.test(l));
    const f = await followUntilCaughtUp(load, t0, copied, abort);
    return result(ctx.opts.w8Rows, { t0, copied, ready }, f, await identical(peer, target), details);
  } finally {
    cli?.kill();
    await load.writers.stop().catch(() => {});
    await load.poller.stop().catch(() => {});
    await bounded('stopping Brabant', () => Promise.all(services.map((s) => s.stop())));
    await bounded('dropping the origins, topics and groups', () =>
      forgetCluster(ctx, [peer, target], [peerId, newId], [regionA, regionB]),
    );
    await bounded(`dropping ${peer.name}`, () => peer.drop());
    await bounded(`dropping ${target.name}`, () => target.drop());
  }
}

/** What a W8 cluster leaves outside its databases: replication origins (per server), topics, groups. */
async function forgetCluster(ctx: Ctx, dbs: Db[], ids: string[], regions: string[]): Promise<void> {
  for (const db of dbs)
    await adminQuery(
      db.server,
      'select pg_replication_origin_drop(roname) from pg_replication_origin where roname = any($1)',
      [ids.map((id) => `brabant_${id}`)],
    ).catch(() => {});
  const admin = new Kafka({
    clientId: 'brabant-bench',
    brokers: ctx.brokers.split(','),
    logLevel: logLevel.NOTHING,
  }).admin();
  try {
    await admin.connect();
    await admin
      .deleteTopics({ topics: regions.map((r) => `brabant.${r}.changes`), timeout: 10_000 })
      .catch(() => {});
    await admin.deleteGroups(ids.map((id) => `brabant-apply-${id}`)).catch(() => {});
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------- native

async function runNative(ctx: Ctx, details: Record<string, unknown>): Promise<RunResult> {
  const { peer, target } = await peerAndNewNode(ctx, 'native', details);
  const sub = `bench_w8_sub_${tag()}`;
  const load = liveLoad(ctx, peer, target);
  try {
    await peer.client.query('create publication bench_w8_pub for table items');
    await load.poller.start();
    load.writers.start();
    const t0 = nowMs();
    await target.client.query(
      `create subscription ${sub} connection 'host=127.0.0.1 port=${peer.server.port} dbname=${peer.name} user=postgres'
         publication bench_w8_pub with (copy_data = true)`,
    );
    const abort = () => (load.writers.error ? String(load.writers.error) : undefined);
    const states = (want: string[]) => async () => {
      const r = await target.client.query<{ s: string }>(
        'select r.srsubstate as s from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid where s.subname = $1',
        [sub],
      );
      const at = nowMs();
      return r.rows.length > 0 && r.rows.every((x) => want.includes(x.s)) ? at : undefined;
    };
    // f: the table copied; r: its sync worker caught up and handed over to the apply worker
    const copied = await until('the subscription to copy the table', states(['f', 's', 'r']), {
      timeoutMs: HOUR,
      intervalMs: 20,
      abort,
    });
    const ready = await until('the table to be ready (synchronized)', states(['r']), {
      timeoutMs: HOUR,
      intervalMs: 20,
      abort,
    });
    const f = await followUntilCaughtUp(load, t0, copied, () => undefined);
    return result(ctx.opts.w8Rows, { t0, copied, ready }, f, await identical(peer, target), details);
  } finally {
    await load.writers.stop().catch(() => {});
    await load.poller.stop().catch(() => {});
    await bounded('dropping the subscription', () =>
      target.client.query(`drop subscription if exists ${sub}`),
    );
    await bounded(`dropping ${peer.name}`, () => peer.drop());
    await bounded(`dropping ${target.name}`, () => target.drop());
  }
}

// ---------------------------------------------------------------------------------------- pg_dump

/** `pg_dump -Fc SOURCE | pg_restore -d TARGET`; rejects with the stderr of the one that failed. */
function dumpRestore(source: string, target: string): Promise<void> {
  const bin = postgresBinDir();
  const dump = spawn(`${bin}/pg_dump`, ['-Fc', '-d', source], { stdio: ['ignore', 'pipe', 'pipe'] });
  const restore = spawn(`${bin}/pg_restore`, ['--no-owner', '-d', target], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  dump.stdout!.pipe(restore.stdin!);
  const ended = (p: ChildProcess, what: string) =>
    new Promise<void>((res, rej) => {
      let err = '';
      p.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      p.once('exit', (code) =>
        code === 0 ? res() : rej(new Error(`${what} exited ${code}: ${err.trim()}`)),
      );
    });
  return Promise.all([ended(dump, 'pg_dump'), ended(restore, 'pg_restore')]).then(() => {});
}

async function runDump(ctx: Ctx, details: Record<string, unknown>): Promise<RunResult> {
  const { peer, target } = await peerAndNewNode(ctx, 'pgdump', details);
  const load = liveLoad(ctx, peer, target);
  try {
    load.writers.start();
    const t0 = nowMs();
    await dumpRestore(peer.url, target.url);
    const copied = nowMs();
    const w = await load.writers.stop();
    details.liveRows = w.rows;
    details.copiedRows = Number((await target.client.query('select count(*) from items')).rows[0].count);
    return {
      values: {
        copyRowsPerSec: ctx.opts.w8Rows / ((copied - t0) / 1000),
        copySeconds: (copied - t0) / 1000,
        loadRowsPerSec: w.rows / w.seconds,
      },
      details,
    };
  } finally {
    await load.writers.stop().catch(() => {});
    await bounded(`dropping ${peer.name}`, () => peer.drop());
    await bounded(`dropping ${target.name}`, () => target.drop());
  }
}

export const W8: Scenario = {
  id: 'W8',
  title: 'node join',
  systems: ['brabant', 'native', 'pgdump'],
  rows: [
    {
      key: 'copyRowsPerSec',
      label: 'initial copy rows/s (the peer’s rows ÷ start → copy complete with indexes), under the W2 load',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['native', 'pgdump'],
    },
    {
      key: 'copySeconds',
      label: 'start → copy complete',
      unit: 's',
      better: 'lower',
      baselines: ['native', 'pgdump'],
    },
    {
      key: 'readySeconds',
      label:
        'start → caught up by its own verdict (Brabant: `brabant node join` ends, a round of marks applied within 5 s; native: sync state r)',
      unit: 's',
      better: 'lower',
      baselines: ['native'],
    },
    {
      key: 'caughtUpSeconds',
      label: `start → caught up (the last live row to arrive > ${LATE_MS} ms after its commit; pg_dump never does)`,
      unit: 's',
      better: 'lower',
      baselines: ['native'],
    },
    {
      key: 'loadRowsPerSec',
      label: 'rows/s the W2 load committed on the peer meanwhile',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['native', 'pgdump'],
    },
    {
      key: 'identical',
      label: 'new node identical to the peer after the load (rows and checksum)',
      unit: '',
      better: 'yes',
      baselines: ['native'],
    },
  ],
  async run(ctx, system, label) {
    const details: Record<string, unknown> = { rows: ctx.opts.w8Rows, clients: ctx.opts.w2Clients };
    say(`${label}: loading ${ctx.opts.w8Rows.toLocaleString('en-US')} rows into the peer`);
    if (system === 'brabant') return runBrabant(ctx, label, details);
    if (system === 'native') return runNative(ctx, details);
    if (system === 'pgdump') return runDump(ctx, details);
    throw new Error(`W8 has no system ${system}`);
  },
};
