/**
 * The layout across datacenters under a cut link (issue 17), on a stack of this file's own: a
 * Kafka cluster per region, the registry in Vlaanderen and a follower on a standby of its
 * database in Wallonie, and the link between the regions (relays on every cross-region
 * connection, infra/link) that the tests cut and heal.
 *
 * - Cut for 30 s under writes in both regions: both keep accepting writes, each capture keeps
 *   producing into its own cluster (slots advance, retained WAL stays bounded — measured and
 *   printed), applies wait and retry without crashing, and after the heal both end identical
 *   with every committed write.
 * - A new schema in the follower region while cut: its capture waits (SCHEMA_REGISTRATION_WAITING),
 *   never makes up an id, and goes on after the heal; the ids agree in both registries.
 * - One region's Kafka cluster down: that region's capture waits and its slot's WAL grows
 *   (brabant_capture_slot_retained_wal_bytes), the other region goes on; then recovery.
 * - Bad input: an apply started while the peer cluster is unreachable waits with retries; a
 *   change topic compacted by hand stops capture with the fix.
 */
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPart, stopPart } from '../infra/stack-control.ts';
import { type Pair, replicationPair, type Side, tableRows, waitConverged } from './support/pair.ts';
import { perRegionStack } from './support/regions.ts';
import type { ServiceProcess } from './support/services.ts';

const CUT_SECONDS = Number(process.env.BRABANT_PARTITION_CUT_SECONDS ?? 30);
const SCHEMA =
  'create table items (id bigint primary key, region text not null, qty int not null, updated_at timestamptz not null default now())';
const HOT = 10;

let stack: Awaited<ReturnType<typeof perRegionStack>>;
let pair: Pair | undefined;
beforeAll(async () => {
  stack = await perRegionStack('partition');
});
afterAll(async () => {
  await stack?.stop();
});
afterEach(async () => {
  await stack.link.heal().catch(() => {});
  await pair?.cleanup();
  pair = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A region's writer: a new row and an update of a hot row per transaction; records what committed. */
class Writer {
  committed: number[] = [];
  failures = 0;
  private running = true;
  private done: Promise<void> | undefined;
  constructor(
    private readonly side: Side,
    private readonly base: number,
  ) {}
  start(): void {
    const c = this.side.client;
    const region = this.side.node.region;
    this.done = (async () => {
      let i = 0;
      while (this.running) {
        i++;
        try {
          await c.query('begin');
          await c.query('insert into items values ($1, $2, $3, now())', [this.base + i, region, i]);
          await c.query('update items set qty = qty + 1, region = $2, updated_at = now() where id = $1', [
            1 + (i % HOT),
            region,
          ]);
          await c.query('commit');
          this.committed.push(this.base + i);
        } catch {
          this.failures++;
          await c.query('rollback').catch(() => {});
        }
        await sleep(15);
      }
    })();
  }
  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
  /** Commits since `from` (an index into committed). */
  since(from: number): number {
    return this.committed.length - from;
  }
}

interface SlotFigures {
  retained: number;
  confirmed: string;
}

/** The WAL the node keeps for the side's slot, and how far the slot is confirmed. */
async function slot(side: Side): Promise<SlotFigures> {
  const c = new pg.Client({ connectionString: side.node.url });
  await c.connect();
  try {
    const r = await c.query<{ retained: string; confirmed: string }>(
      `select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text as retained,
              pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::text as confirmed
         from pg_replication_slots where slot_name = $1`,
      [side.names.slot],
    );
    return { retained: Number(r.rows[0]!.retained), confirmed: r.rows[0]!.confirmed };
  } finally {
    await c.end();
  }
}

/** The /metrics of a service started with BRABANT_METRICS_PORT=0 (its port is in its first lines). */
async function metrics(svc: ServiceProcess): Promise<string> {
  const line = await svc.waitForLog(/metrics endpoint listening/);
  const port = (JSON.parse(line) as { address: { port: number } }).address.port;
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

async function startAll(p: Pair, env: Record<string, string> = {}) {
  const procs = new Map<string, ServiceProcess>();
  for (const s of p.sides) {
    procs.set(`capture:${s.node.region}`, p.capture(s, { BRABANT_CAPTURE_SLOT_WATCH_MS: '500', ...env }));
    procs.set(`apply:${s.node.region}`, p.apply(s));
  }
  await Promise.all(
    [...procs.entries()].map(([k, svc]) =>
      svc.waitForLog(k.startsWith('capture') ? /capture session starting/ : /apply session running/),
    ),
  );
  return procs;
}

const MiB = 2 ** 20;

describe('a Kafka cluster per region, the link between them cut', { timeout: 300_000 }, () => {
  it(`cut for ${CUT_SECONDS} s under writes in both regions: both write, slots advance, WAL stays bounded; after the heal both are identical`, async () => {
    pair = await replicationPair(SCHEMA, stack);
    const [vl, wa] = [pair.vl, pair.wa];
    const procs = await startAll(pair);
    await vl.client.query(
      `insert into items select g, 'vlaanderen', 0, now() from generate_series(1, ${HOT}) g`,
    );
    await waitConverged(pair.sides, 'items', (rows) => rows.length === HOT);
    const writers = [new Writer(vl, 1_000_000), new Writer(wa, 2_000_000)];
    for (const w of writers) w.start();
    await sleep(3000);

    const atCut = await Promise.all(pair.sides.map(slot));
    const committedAtCut = writers.map((w) => w.committed.length);
    await stack.link.cut('reset');
    const cutAt = Date.now();
    const samples: { t: number; vl: number; wa: number }[] = [];
    while (Date.now() - cutAt < CUT_SECONDS * 1000) {
      await sleep(2000);
      const [a, b] = await Promise.all(pair.sides.map(slot));
      samples.push({ t: Math.round((Date.now() - cutAt) / 1000), vl: a!.retained, wa: b!.retained });
      for (const [k, svc] of procs)
        expect(svc.running, `${k} crashed during the cut: ${svc.deathReason()}`).toBe(true);
    }
    const beforeHeal = await Promise.all(pair.sides.map(slot));
    const writesDuringCut = writers.map((w, i) => w.committed.length - committedAtCut[i]!);
    // apply saw its peer's cluster go away and says so, per cluster
    for (const s of pair.sides) {
      const text = await metrics(procs.get(`apply:${s.node.region}`)!);
      expect(text).toMatch(/brabant_apply_cluster_up\{cluster="[^"]+"\} 0/);
    }
    await stack.link.heal();
    const healedAt = Date.now();
    await sleep(3000);
    for (const w of writers) await w.stop();
    const stoppedAt = Date.now();
    const want = writers.flatMap((w) => w.committed);
    const rows = await waitConverged(pair.sides, 'items', holdsAll(want), 120_000);
    const convergedAt = Date.now();

    const maxRetained = (k: 'vl' | 'wa') => Math.max(...samples.map((s) => s[k]));
    console.log(
      [
        `partition: link cut ${CUT_SECONDS} s; writes committed during the cut: vlaanderen ${writesDuringCut[0]}, wallonie ${writesDuringCut[1]} (failed ${writers[0]!.failures} + ${writers[1]!.failures})`,
        `retained WAL of the slots during the cut (MiB, every 2 s): vl-1 ${samples.map((s) => (s.vl / MiB).toFixed(2)).join(' ')}`,
        `                                                           wa-1 ${samples.map((s) => (s.wa / MiB).toFixed(2)).join(' ')}`,
        `max retained WAL during the cut: vl-1 ${(maxRetained('vl') / MiB).toFixed(2)} MiB, wa-1 ${(maxRetained('wa') / MiB).toFixed(2)} MiB`,
        `slots confirmed during the cut: vl-1 +${Number(beforeHeal[0]!.confirmed) - Number(atCut[0]!.confirmed)} bytes, wa-1 +${Number(beforeHeal[1]!.confirmed) - Number(atCut[1]!.confirmed)} bytes`,
        `heal → converged: ${((convergedAt - healedAt) / 1000).toFixed(1)} s (writes went on 3 s after the heal; last write → converged ${((convergedAt - stoppedAt) / 1000).toFixed(1)} s); ${rows.length} rows identical on both nodes`,
      ].join('\n'),
    );
    expect(writesDuringCut[0]).toBeGreaterThan(50);
    expect(writesDuringCut[1]).toBeGreaterThan(50);
    // each capture kept confirming to its slot: the WAL it holds stays small while cut
    for (const i of [0, 1])
      expect(Number(beforeHeal[i]!.confirmed)).toBeGreaterThan(Number(atCut[i]!.confirmed));
    expect(maxRetained('vl')).toBeLessThan(64 * MiB);
    expect(maxRetained('wa')).toBeLessThan(64 * MiB);
    expect(await tableRows(vl.client, 'items')).toEqual(await tableRows(wa.client, 'items'));
  });

  it('a new schema in the follower region while cut: capture waits without making up an id, and goes on after the heal', async () => {
    pair = await replicationPair(SCHEMA, stack);
    const procs = await startAll(pair);
    await stack.link.cut('reset');
    // the same table made on each node by hand (DDL replication would send each node's create
    // to the other, where it already exists)
    for (const s of pair.sides)
      await s.client.query(
        'begin; set local brabant.ddl_replication = off; create table fresh (id int primary key, note text); commit',
      );
    await pair.wa.client.query("insert into fresh values (1, 'written in wallonie while cut')");
    await pair.vl.client.query("insert into fresh values (2, 'written in vlaanderen while cut')");
    const capture = procs.get('capture:wallonie')!;
    const waiting = await capture.waitForLog(/SCHEMA_REGISTRATION_WAITING/, 60_000);
    expect(waiting).toContain('no id is made up');
    expect(capture.running).toBe(true);
    await stack.link.heal();
    const rows = await waitConverged(pair.sides, 'fresh', (r) => r.length === 2, 90_000);
    expect(rows).toHaveLength(2);
    // the id wallonie's capture used is the primary's, and the follower serves the same schema
    const [primary, follower] = [stack.registryUrl, stack.regions[1]!.registryUrl];
    const subjects = (await (await fetch(`${primary}/subjects`)).json()) as string[];
    const subject =
      subjects.find((s) => s.includes('fresh') && s.includes(pair!.wa.names.topic)) ??
      subjects.find((s) => s.includes('fresh'));
    expect(subject).toBeDefined();
    const latest = (await (
      await fetch(`${primary}/subjects/${encodeURIComponent(subject!)}/versions/latest`)
    ).json()) as {
      id: number;
      schema: string;
    };
    const onFollower = await waitForSchema(follower, latest.id);
    expect(onFollower).toBe(latest.schema);
  });

  it('one region’s Kafka down: its capture waits and its WAL grows, the other region goes on; then it recovers', async () => {
    pair = await replicationPair(SCHEMA, stack);
    const procs = await startAll(pair);
    const writers = [new Writer(pair.vl, 3_000_000), new Writer(pair.wa, 4_000_000)];
    await stopPart(stack.workDir, 'kafka-wallonie');
    try {
      for (const w of writers) w.start();
      const vlBefore = await slot(pair.vl);
      const waBefore = await slot(pair.wa);
      await sleep(12_000);
      const vlAfter = await slot(pair.vl);
      const waAfter = await slot(pair.wa);
      const waMetrics = await metrics(procs.get('capture:wallonie')!);
      console.log(
        `kafka-wallonie down 12 s: wa-1 slot retains ${(waAfter.retained / MiB).toFixed(2)} MiB (was ${(waBefore.retained / MiB).toFixed(2)}), ` +
          `brabant_capture_slot_retained_wal_bytes ${metric(waMetrics, 'brabant_capture_slot_retained_wal_bytes')}; ` +
          `vl-1 confirmed +${Number(vlAfter.confirmed) - Number(vlBefore.confirmed)} bytes, retains ${(vlAfter.retained / MiB).toFixed(2)} MiB`,
      );
      // wallonie: nothing confirmed, the WAL behind the slot grows, and the metric says so
      expect(waAfter.confirmed).toBe(waBefore.confirmed);
      expect(waAfter.retained).toBeGreaterThan(waBefore.retained);
      expect(metric(waMetrics, 'brabant_capture_slot_retained_wal_bytes')).toBeGreaterThan(0);
      await procs.get('capture:wallonie')!.waitForLog(/KAFKA_UNAVAILABLE/);
      // vlaanderen: capture goes on into its own cluster, writes go on in both regions
      expect(Number(vlAfter.confirmed)).toBeGreaterThan(Number(vlBefore.confirmed));
      expect(writers[0]!.committed.length).toBeGreaterThan(50);
      expect(writers[1]!.committed.length).toBeGreaterThan(50);
      for (const [k, svc] of procs) expect(svc.running, `${k}: ${svc.deathReason()}`).toBe(true);
    } finally {
      await startPart(stack.workDir, 'kafka-wallonie');
    }
    // recovery: the region's capture goes on confirming into its slot, writes still coming
    expect(await waitMoved(pair.wa, (await slot(pair.wa)).confirmed, 30_000)).toBe(true);
    for (const w of writers) await w.stop();
    const want = writers.flatMap((w) => w.committed);
    await waitConverged(pair.sides, 'items', holdsAll(want), 120_000);
    expect((await slot(pair.wa)).retained).toBeLessThan(64 * MiB);
  });

  it('an apply started while the peer cluster is unreachable waits with retries, then applies', async () => {
    pair = await replicationPair(SCHEMA, stack);
    const capture = pair.capture(pair.wa);
    await capture.waitForLog(/capture session starting/);
    await pair.wa.client.query("insert into items values (1, 'wallonie', 1, now())");
    await stack.link.cut('reset');
    const apply = pair.apply(pair.vl);
    const line = await apply.waitForLog(
      /KAFKA_UNAVAILABLE: the change topics .* cannot be read from Kafka/,
      60_000,
    );
    expect(line).toContain(pair.wa.names.topic);
    await sleep(3000);
    expect(apply.running).toBe(true);
    await stack.link.heal();
    await apply.waitForLog(/apply session running/, 90_000);
    await waitConverged(pair.sides, 'items', (r) => r.length === 1, 60_000);
  });

  it('a change topic compacted by hand stops capture with the topic, the setting and the fix', async () => {
    pair = await replicationPair(SCHEMA, stack);
    const kafka = new Kafka({
      clientId: 'test',
      brokers: stack.regions[0]!.kafkaBrokers,
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        {
          topic: pair.vl.names.topic,
          numPartitions: 6,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        },
      ],
    });
    await admin.disconnect();
    const capture = pair.capture(pair.vl);
    const code = await capture.exited;
    expect(code).toBe(1);
    const said = capture.lines.join('\n');
    expect(said).toContain(
      `topic ${pair.vl.names.topic} cannot carry change events as it is: cleanup.policy=compact`,
    );
    expect(said).toContain('--add-config cleanup.policy=delete');
  });
});

/** Whether the side's slot is confirmed past `from` within `ms` (capture goes on). */
async function waitMoved(side: Side, from: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (BigInt((await slot(side)).confirmed) > BigInt(from)) return true;
    await sleep(500);
  }
  return false;
}

/** Whether rows (tableRows' JSON lines) hold every id written. */
function holdsAll(ids: number[]): (rows: string[]) => boolean {
  return (rows) => {
    const have = new Set(rows.map((r) => (JSON.parse(r) as { id: number }).id));
    return ids.every((id) => have.has(id));
  };
}

async function waitForSchema(registry: string, id: number): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await fetch(`${registry}/schemas/ids/${id}`);
    if (res.ok) return ((await res.json()) as { schema: string }).schema;
    if (Date.now() > deadline) throw new Error(`the follower registry ${registry} never served id ${id}`);
    await sleep(250);
  }
}
