/**
 * Fills a status report from a topology (I/O shell around status-model.ts): every node's
 * database, its capture's and apply's /healthz and /metrics, each region's router, Kafka cluster
 * (and its dead-letter topic) and registry, all asked at once, each with a deadline; whatever does
 * not answer is reported as such and the rest is still shown.
 *
 * Services are looked for on the host of their node's PostgreSQL URL at the metrics ports the
 * topology gives (captureMetricsPort, applyMetricsPort), a router's control API on 127.0.0.1 at
 * its controlPort (as `brabant switchover` does).
 */
import pg from 'pg';
import { slotName } from '../protocol/names.ts';
import { registryRequest } from '../protocol/registry-http.ts';
import { DEAD_LETTER_TOPIC } from '../protocol/topics.ts';
import { createKafka } from '../runtime/kafka.ts';
import { createLogger } from '../runtime/log.ts';
import { redactUrl } from '../runtime/redact.ts';
import { sameCluster, type Topology, type TopologyNode, type TopologyRegion } from '../runtime/topology.ts';
import { commandKafkaAuth, commandRegistryTls } from './command-access.ts';
import { type DeadLetterAction, isOpen, parseDeadLetter } from './deadletter-model.ts';
import { readDeadLetterRecords } from './deadletter-read.ts';
import { oneValue, parseMetrics, type Sample, samplesOf, sumOf } from './prometheus-text.ts';
import {
  type ApplyStatus,
  type CaptureStatus,
  DEFAULT_THRESHOLDS,
  type NodeStatus,
  type RegionStatus,
  type RouterStatus,
  type StatusReport,
  type Thresholds,
  verdictOf,
} from './status-model.ts';

const TIMEOUT_MS = 4000;
const quiet = createLogger('brabant-status', 'silent');

export interface CollectOptions {
  thresholds?: Thresholds;
  /** Read the dead-letter topics (a consumer per cluster, a few seconds). */
  deadLetters?: boolean;
  now?: () => number;
}

const message = (err: unknown) => ((err as Error)?.message ?? String(err)).split('\n')[0]!.slice(0, 300);

type Settled<T> = { ok: true; v: T } | { ok: false; error: string };

function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (v) => ({ ok: true as const, v }),
    (err: unknown) => ({ ok: false as const, error: message(err) }),
  );
}

async function within<T>(ms: number, what: string, f: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      f(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** One node's database: what its slot, origins, conflict log and DDL resolutions say. */
async function readNode(n: TopologyNode, peers: string[]) {
  const db = new pg.Client({
    connectionString: n.postgres,
    connectionTimeoutMillis: TIMEOUT_MS,
    statement_timeout: TIMEOUT_MS,
    application_name: 'brabant-status',
  });
  db.on('error', () => {});
  await db.connect();
  try {
    const wal = (await db.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0]!.lsn;
    const slot = (
      await db.query<{
        active: boolean;
        confirmed: string | null;
        retained: string | null;
        wal_status: string | null;
      }>(
        `select active, confirmed_flush_lsn::text as confirmed,
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text as retained, wal_status
           from pg_replication_slots where slot_name = $1`,
        [slotName(n.id)],
      )
    ).rows[0];
    const origins = (
      await db.query<{ source: string; lsn: string | null }>(
        `select p.source, s.remote_lsn::text as lsn
           from unnest($1::text[]) as p(source)
           left join pg_replication_origin_status s on s.external_id = 'brabant_' || p.source`,
        [peers],
      )
    ).rows;
    const hasSchema = (await db.query(`select 1 from pg_namespace where nspname = 'brabant'`)).rowCount === 1;
    const conflicts = hasSchema
      ? (
          await db.query<{ kind: string; last_hour: number; total: number }>(
            `select kind, (count(*) filter (where logged_at > now() - interval '1 hour'))::int as last_hour, count(*)::int as total
               from brabant.conflicts group by kind order by kind`,
          )
        ).rows
      : [];
    const ddl = hasSchema
      ? (
          await db.query<{ source: string; lsn: string; statement: string | null; reason: string | null }>(
            `select c.remote_node as source, c.remote_commit_lsn::text as lsn,
                    c.remote_row ->> 'statement' as statement, c.remote_row ->> 'reason' as reason
               from brabant.conflicts c
               left join pg_replication_origin_status s on s.external_id = 'brabant_' || c.remote_node
              where c.kind = 'ddl_failed' and (s.remote_lsn is null or s.remote_lsn < c.remote_commit_lsn)
                and not exists (select 1 from brabant.ddl_resolutions r
                                 where r.source = c.remote_node and r.commit_lsn = c.remote_commit_lsn)
              order by c.remote_commit_lsn`,
          )
        ).rows
      : [];
    const actions = hasSchema ? await readActions(db, n.id) : [];
    return { wal, slot, origins, conflicts, ddl, actions };
  } finally {
    await db.end().catch(() => {});
  }
}

/** What was done with dead letters on a node (empty before apply created the table). */
export async function readActions(db: pg.Client, node: string): Promise<DeadLetterAction[]> {
  const exists = await db.query(`select to_regclass('brabant.dead_letter_actions') is not null as e`);
  if (!exists.rows[0]?.e) return [];
  const r = await db.query<{
    id: string;
    action: 'reapply' | 'discard';
    state: 'requested' | 'done' | 'failed';
    detail: string | null;
    at: Date;
  }>(
    'select id, action, state, detail, coalesce(done_at, requested_at) as at from brabant.dead_letter_actions',
  );
  return r.rows.map((x) => ({
    node,
    id: x.id,
    action: x.action,
    state: x.state,
    detail: x.detail,
    at: x.at.toISOString(),
  }));
}

/** A service's /healthz and /metrics. */
async function readService(url: string): Promise<{ ready: boolean; detail: string; samples: Sample[] }> {
  const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  const text = (await health.text()).trim();
  const metrics = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  return {
    ready: health.ok,
    detail: text.replace(/^(not )?ready: /, ''),
    samples: parseMetrics(await metrics.text()),
  };
}

function serviceUrl(n: TopologyNode, port: number | undefined): string | undefined {
  if (port === undefined) return undefined;
  return `http://${new URL(n.postgres).hostname}:${port}`;
}

async function readRouter(port: number): Promise<RouterStatus> {
  const url = `http://127.0.0.1:${port}`;
  try {
    const res = await fetch(`${url}/status`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const s = (await res.json()) as { leader?: string; nodes?: { id: string; healthy?: boolean }[] };
    return {
      url,
      reachable: true,
      leader: s.leader ?? null,
      nodes: (s.nodes ?? []).map((x) => ({ id: x.id, healthy: x.healthy === true })),
    };
  } catch (err) {
    return { url, reachable: false, error: message(err), leader: null, nodes: [] };
  }
}

async function readKafka(t: Topology, r: TopologyRegion): Promise<{ reachable: boolean; error?: string }> {
  const kafka = createKafka({
    brokers: r.kafka,
    ...commandKafkaAuth(t, r.name),
    clientId: 'brabant-status',
    log: quiet,
    connectionTimeout: 2000,
    requestTimeout: TIMEOUT_MS,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await within(TIMEOUT_MS + 1000, `Kafka ${r.kafka.join(',')}`, async () => {
      await admin.connect();
      await admin.describeCluster();
    });
    return { reachable: true };
  } catch (err) {
    return { reachable: false, error: message(err) };
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

async function readRegistry(t: Topology, url: string): Promise<{ reachable: boolean; error?: string }> {
  try {
    const tls = commandRegistryTls(t);
    const res = await registryRequest(`${url}/subjects`, {
      method: 'GET',
      headers: { accept: 'application/json' },
      timeoutMs: TIMEOUT_MS,
      ...(tls === undefined ? {} : { tls }),
    });
    return res.status >= 200 && res.status < 300
      ? { reachable: true }
      : { reachable: false, error: `answered ${res.status}` };
  } catch (err) {
    return { reachable: false, error: message(err) };
  }
}

async function nodeStatus(
  t: Topology,
  n: TopologyNode,
  now: number,
): Promise<{ status: NodeStatus; actions: DeadLetterAction[] }> {
  const peers = t.nodes.filter((x) => x.id !== n.id);
  const captureUrl = serviceUrl(n, n.captureMetricsPort);
  const applyUrl = serviceUrl(n, n.applyMetricsPort);
  const [db, capture, apply, peerWal] = await Promise.all([
    settle(
      readNode(
        n,
        peers.map((p) => p.id),
      ),
    ),
    settle(
      captureUrl === undefined
        ? Promise.reject(new Error('the topology gives no captureMetricsPort'))
        : readService(captureUrl),
    ),
    settle(
      applyUrl === undefined
        ? Promise.reject(new Error('the topology gives no applyMetricsPort'))
        : readService(applyUrl),
    ),
    Promise.all(peers.map((p) => walOf(p).catch(() => null))),
  ]);
  const cap: CaptureStatus = !capture.ok
    ? { url: captureUrl ?? '-', reachable: false, error: capture.error, pausedTables: [] }
    : {
        url: captureUrl!,
        reachable: true,
        ready: capture.v.ready,
        readyDetail: capture.v.detail,
        lastProduceAgoSeconds: ((t) => (t === undefined ? null : Math.max(0, now / 1000 - t)))(
          oneValue(capture.v.samples, 'brabant_capture_last_commit_timestamp_seconds'),
        ),
        deadLetters: sumOf(capture.v.samples, 'brabant_capture_dead_letters_total'),
        pausedTables: samplesOf(capture.v.samples, 'brabant_capture_table_paused')
          .filter((s) => s.value > 0)
          .map((s) => s.labels.table ?? '?'),
      };
  if (db.ok)
    cap.slot = {
      name: slotName(n.id),
      exists: db.v.slot !== undefined,
      active: db.v.slot?.active ?? false,
      confirmedLsn: db.v.slot?.confirmed ?? null,
      retainedWalBytes:
        db.v.slot?.retained === null || db.v.slot === undefined ? null : Number(db.v.slot.retained),
      walStatus: db.v.slot?.wal_status ?? null,
    };
  const samples = apply.ok ? apply.v.samples : [];
  const app: ApplyStatus = {
    ...(apply.ok
      ? { url: applyUrl!, reachable: true, ready: apply.v.ready, readyDetail: apply.v.detail }
      : { url: applyUrl ?? '-', reachable: false, error: apply.error }),
    origins: peers.map((p, i) => {
      const applied = db.ok ? (db.v.origins.find((o) => o.source === p.id)?.lsn ?? null) : null;
      const lag = oneValue(samples, 'brabant_apply_lag_seconds', { origin: p.id }) ?? null;
      const wal = peerWal[i] ?? null;
      return {
        source: p.id,
        appliedLsn: applied,
        lagBytes:
          applied !== null && wal !== null ? Math.max(0, Number(lsnBytes(wal) - lsnBytes(applied))) : null,
        lagSeconds: lag,
        lastAppliedCommitTime: lag === null ? null : new Date(now - lag * 1000).toISOString(),
      };
    }),
    pausedStreams: samplesOf(samples, 'brabant_apply_stream_paused')
      .filter((s) => s.value > 0)
      .map((s) => ({
        topic: s.labels.topic ?? '?',
        partition: s.labels.partition ?? '?',
        reason: s.labels.reason ?? '?',
      })),
    clusters: samplesOf(samples, 'brabant_apply_cluster_up').map((s) => ({
      cluster: s.labels.cluster ?? '?',
      up: s.value > 0,
    })),
    ...(apply.ok
      ? {
          deadLetters: sumOf(samples, 'brabant_apply_dead_letters_total'),
          rowsApplied: sumOf(samples, 'brabant_apply_rows_total'),
          conflictsResolved: samplesOf(samples, 'brabant_apply_conflicts_total').reduce<
            Record<string, number>
          >((acc, x) => {
            const kind = x.labels.kind;
            if (kind !== undefined) acc[kind] = (acc[kind] ?? 0) + x.value;
            return acc;
          }, {}),
        }
      : {}),
  };
  return {
    status: {
      id: n.id,
      region: n.region,
      database: db.ok
        ? { reachable: true, walLsn: db.v.wal }
        : { reachable: false, error: `${redactUrl(n.postgres)}: ${db.error}` },
      capture: cap,
      apply: app,
      conflicts: db.ok
        ? db.v.conflicts.map((c) => ({ kind: c.kind, lastHour: c.last_hour, total: c.total }))
        : [],
      pendingDdl: db.ok
        ? db.v.ddl.map((d) => ({
            source: d.source,
            commitLsn: d.lsn,
            statement: d.statement,
            reason: d.reason,
          }))
        : [],
    },
    actions: db.ok ? db.v.actions : [],
  };
}

async function walOf(n: TopologyNode): Promise<string> {
  const db = new pg.Client({ connectionString: n.postgres, connectionTimeoutMillis: TIMEOUT_MS });
  db.on('error', () => {});
  await db.connect();
  try {
    return (await db.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0]!.lsn;
  } finally {
    await db.end().catch(() => {});
  }
}

function lsnBytes(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** The status of everything the topology names. */
export async function collectStatus(t: Topology, o: CollectOptions = {}): Promise<StatusReport> {
  const now = (o.now ?? Date.now)();
  const nodeIds = t.nodes.map((n) => n.id);
  // a cluster's dead letters are read once, and shown with the first region on it
  const readsDeadLetters = (r: TopologyRegion) =>
    o.deadLetters !== false && t.regions.find((x) => sameCluster(x, r)) === r;
  const parts = await Promise.all(
    t.regions.map(async (r) => {
      const router = t.routers.find((x) => x.region === r.name);
      const [kafka, registry, routerStatus, nodes, records] = await Promise.all([
        readKafka(t, r),
        readRegistry(t, r.registry),
        router === undefined ? Promise.resolve(undefined) : readRouter(router.controlPort),
        Promise.all(t.nodes.filter((n) => n.region === r.name).map((n) => nodeStatus(t, n, now))),
        readsDeadLetters(r)
          ? within(20_000, `reading ${DEAD_LETTER_TOPIC}`, () =>
              readDeadLetterRecords(r, commandKafkaAuth(t, r.name)),
            ).catch(() => undefined)
          : Promise.resolve(undefined),
      ]);
      const region: RegionStatus = {
        name: r.name,
        kafka: { brokers: r.kafka, ...kafka },
        registry: { url: r.registry, ...registry },
        ...(routerStatus === undefined ? {} : { router: routerStatus }),
        nodes: nodes.map((x) => x.status),
      };
      // only this topology's: a shared cluster holds other deployments' too
      const letters = records
        ?.map((x) => parseDeadLetter(x, nodeIds))
        .filter((d) => nodeIds.includes(d.source) || d.targets.some((x) => nodeIds.includes(x)));
      return { region, letters, actions: nodes.flatMap((x) => x.actions) };
    }),
  );
  // a dead letter is open while one of its targets (in any region) has not handled it
  const actions = parts.flatMap((p) => p.actions);
  const regions = parts.map(({ region, letters }) =>
    letters === undefined
      ? region
      : {
          ...region,
          deadLetters: { total: letters.length, open: letters.filter((d) => isOpen(d, actions)).length },
        },
  );
  const base = { at: new Date(now).toISOString(), topology: t.file, regions };
  return { ...base, verdict: verdictOf(base, o.thresholds ?? DEFAULT_THRESHOLDS) };
}
