/**
 * One apply session (wiring): the node's own objects (tombstones, conflict log, delete
 * triggers), one connection and replication-origin session per source node, the side topics,
 * and per Kafka cluster it reads change topics from (its own region's, and with direct peer
 * streams each peer region's across the link) a read_committed consumer group and a change
 * stream, all handing their batches to the same appliers; offsets are committed per cluster.
 *
 * A cluster that cannot be reached (the link to its region cut, its brokers down) stops only its
 * own consumer: it is started again with backoff while the other clusters' streams go on. Any
 * other error ends the session; the error policy says whether the service starts a new one (the
 * node or the registry away) or stops (a person must act).
 */
import type { Admin, Consumer, Kafka, Producer } from 'kafkajs';
import pg from 'pg';
import { ChangeDecoder } from '../protocol/change-decoder.ts';
import { CATALOG_CHANNEL } from '../protocol/ddl.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { applyGroupId } from '../protocol/names.ts';
import { ensureDeleteTriggers, ensureNodeObjects, noteAllColumns } from '../protocol/node-schema.ts';
import type { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { changeTopic, changeTopicSettings, ensureTopic, sideTopicSettings } from '../protocol/topics.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import { BrabantError } from '../runtime/errors.ts';
import { classifyKafkaError, createKafka } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';
import type { Readiness } from '../runtime/readiness.ts';
import { redactUrl } from '../runtime/redact.ts';
import { backoffDelay } from '../runtime/supervise.ts';
import { ChangeStream } from './change-stream.ts';
import type { applyConfig } from './config.ts';
import type { ApplyMetrics } from './metrics.ts';
import { OffsetTracker } from './offset-tracker.ts';
import { APPLY_SESSION_OPTIONS, OriginApplier } from './origin-applier.ts';
import { serveReplays } from './replay.ts';
import { pruneResyncedVersions } from './resync.ts';
import { SideTopics } from './side-topics.ts';
import { TargetCatalog } from './target-catalog.ts';
import { pruneTombstones } from './tombstones.ts';

export type ApplyConfig = ConfigOf<typeof applyConfig>;

export interface ApplySessionDeps {
  config: ApplyConfig;
  kafka: Kafka;
  registry: SchemaRegistryClient;
  log: Logger;
  metrics: ApplyMetrics;
  stopRequested: Promise<void>;
  /** Set ready while every cluster's consumer runs. */
  readiness?: Readiness;
}

/** The change topics apply reads from one Kafka cluster. */
export interface ClusterSource {
  brokers: string[];
  topics: string[];
}

/**
 * Where each change topic is read: BRABANT_APPLY_TOPICS (or the regions' topics) on the local
 * cluster, and each BRABANT_APPLY_SOURCES entry (`topic=host:port|host:port`) on its own; topics
 * of one cluster share its consumer.
 */
export function applySources(c: ApplyConfig): ClusterSource[] {
  const local = c.topics.length > 0 ? c.topics : c.regions.map(changeTopic);
  const byCluster = new Map<string, ClusterSource>();
  const add = (brokers: string[], topic: string) => {
    const key = [...brokers].sort().join(',');
    const src = byCluster.get(key) ?? { brokers, topics: [] };
    if (!src.topics.includes(topic)) src.topics.push(topic);
    byCluster.set(key, src);
  };
  for (const t of local) add(c.kafkaBrokers, t);
  for (const entry of c.sources) {
    const eq = entry.indexOf('=');
    const brokers =
      eq > 0
        ? entry
            .slice(eq + 1)
            .split('|')
            .filter((b) => b.trim() !== '')
        : [];
    if (eq <= 0 || brokers.length === 0)
      throw new BrabantError(
        'CONFIG_INVALID',
        `BRABANT_APPLY_SOURCES entry '${entry}' must look like topic=host:port|host:port (e.g. brabant.wallonie.changes=10.0.2.1:9092|10.0.2.2:9092)`,
      );
    add(brokers, entry.slice(0, eq));
  }
  if (byCluster.size === 0) {
    throw new BrabantError(
      'CONFIG_INVALID',
      'apply has nothing to consume: set BRABANT_APPLY_REGIONS (e.g. vlaanderen,wallonie), BRABANT_APPLY_TOPICS or BRABANT_APPLY_SOURCES',
    );
  }
  return [...byCluster.values()];
}

/** Every change topic apply reads, on whichever cluster. */
export function applyTopics(c: ApplyConfig): string[] {
  return applySources(c).flatMap((s) => s.topics);
}

async function connect(url: string, name: string): Promise<pg.Client> {
  const db = new pg.Client({ connectionString: url, options: APPLY_SESSION_OPTIONS, application_name: name });
  try {
    await db.connect();
  } catch (err) {
    const d = directiveFor(err, { doing: `connecting to the node at ${redactUrl(url)}` });
    throw d.kind === 'stop' || d.kind === 'retry'
      ? d.error
      : new BrabantError('SOURCE_UNAVAILABLE', `cannot connect to the node at ${redactUrl(url)}`, {
          cause: err,
        });
  }
  return db;
}

export async function runApplySession(deps: ApplySessionDeps): Promise<void> {
  const { config: c, log, metrics } = deps;
  const sources = applySources(c);
  const groupId = c.groupId || applyGroupId(c.nodeId);
  const control = await connect(c.pgUrl, `brabant-apply-${c.nodeId}`);
  const connections: pg.Client[] = [control];
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  let failed: (err: unknown) => void = () => {};
  const failure = new Promise<never>((_, reject) => {
    failed = reject;
  });
  // a failure before the session waits on it is still seen there, not reported as unhandled
  failure.catch(() => {});
  let ended = false;
  let endSession: () => void = () => {};
  const sessionEnded = new Promise<void>((resolve) => {
    endSession = () => {
      ended = true;
      resolve();
    };
  });
  const lost = (err: Error) =>
    failed(new BrabantError('SOURCE_UNAVAILABLE', `node connection lost: ${err.message}`, { cause: err }));
  const timers: NodeJS.Timeout[] = [];
  const clusters: Promise<void>[] = [];
  try {
    control.on('error', lost);
    await ensureNodeObjects(control);
    const triggers = await ensureDeleteTriggers(control);
    await noteAllColumns(control);
    if (triggers.length > 0)
      log.info({ tables: triggers }, 'delete triggers installed (tombstones of local deletes)');

    try {
      admin = deps.kafka.admin();
      await admin.connect();
      for (const side of sideTopicSettings()) await ensureTopic(admin, side, log);
      producer = deps.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
    } catch (err) {
      throw classifyKafkaError(err, `connecting to Kafka ${c.kafkaBrokers.join(',')}`);
    }

    const catalog = new TargetCatalog(control);
    // DDL made on this node itself (by hand, local-only or not) changes tables the catalog holds
    control.on('notification', (n) => n.channel === CATALOG_CHANNEL && catalog.invalidate());
    await control.query(`listen ${CATALOG_CHANNEL}`);
    const appliers = new Map<string, Promise<OriginApplier>>();
    const applierFor = (source: string): Promise<OriginApplier> => {
      let a = appliers.get(source);
      if (a === undefined) {
        a = (async () => {
          const db = await connect(c.pgUrl, `brabant-apply-${c.nodeId}-from-${source}`);
          connections.push(db);
          db.on('error', lost);
          const applier = new OriginApplier(db, source, {
            localNode: c.nodeId,
            catalog,
            log,
            metrics,
            chunkRows: c.chunkRows,
            groupTransactions: c.groupTransactions,
          });
          await applier.init();
          await control.query('insert into brabant.peers (node) values ($1) on conflict do nothing', [
            source,
          ]);
          log.info(
            { source, origin: applier.origin, progress: formatLsn(applier.progress) },
            'applying changes of a source node',
          );
          return applier;
        })();
        appliers.set(source, a);
      }
      return a;
    };

    // One connection that commits synchronously: its commit flushes the WAL of every
    // asynchronous commit before it, before any offset is committed to Kafka (ChangeStream.durable)
    const flusher = await connect(c.pgUrl, `brabant-apply-${c.nodeId}-flush`);
    connections.push(flusher);
    flusher.on('error', lost);
    await flusher.query('set synchronous_commit = on');
    // an xid makes the commit write a commit record, and a synchronous one waits for its flush
    const durable = async () => {
      await flusher.query('select txid_current()');
    };

    const lastCommitTs = new Map<string, bigint>();
    const sideTopics = new SideTopics(producer, c.nodeId, metrics);
    timers.push(
      setInterval(() => {
        void pruneTombstones(control, lastCommitTs, c.tombstoneMarginMs)
          .then((n) => {
            if (n > 0) {
              metrics.tombstonesPruned.inc({}, n);
              log.debug({ pruned: n }, 'tombstones pruned');
            }
          })
          .catch((err) => log.warn({ err: (err as Error).message }, 'tombstone pruning failed'));
        // the original versions resyncs recorded go by the same rule (apply/resync.ts)
        void pruneResyncedVersions(control, lastCommitTs, c.tombstoneMarginMs).catch((err) =>
          log.warn({ err: (err as Error).message }, 'pruning resynced versions failed'),
        );
      }, c.pruneIntervalMs),
    );

    // dead letters the operator asked to re-apply (brabant deadletters reapply)
    timers.push(
      serveReplays({
        control,
        applierFor,
        catalog,
        decoder: new ChangeDecoder(deps.registry),
        sideTopics,
        metrics,
        log,
        periodMs: 1000,
      }),
    );
    let running = 0;
    for (const src of sources) {
      const local = src.brokers === c.kafkaBrokers;
      clusters.push(
        readCluster({
          deps,
          src,
          kafka: local
            ? deps.kafka
            : createKafka({ brokers: src.brokers, clientId: `brabant-apply-${c.nodeId}`, log }),
          groupId,
          newStream: (consumer, applierOf) =>
            new ChangeStream({
              nodeId: c.nodeId,
              consumer,
              decoder: new ChangeDecoder(deps.registry),
              applierFor: applierOf,
              sideTopics,
              tracker: new OffsetTracker(c.offsetCommitMs),
              lastCommitTs,
              registryUrl: c.registryUrl,
              retryMaxMs: c.retryMaxMs,
              deadLetterAt: new Set(c.deadLetterAt),
              onFailure: (err) => failed(sessionError(err, c.nodeId)),
              durable,
              log,
              metrics,
            }),
          applierFor,
          appliers,
          sessionEnded,
          isEnded: () => ended,
          onRunning: () => {
            running++;
            if (running === sources.length) {
              deps.readiness?.set(
                true,
                `reading ${sources.flatMap((x) => x.topics).join(', ')} from ${sources.length} cluster(s)`,
              );
              log.info(
                { topics: sources.flatMap((x) => x.topics), clusters: sources.length, group: groupId },
                'apply session running',
              );
            }
          },
          failed,
        }),
      );
    }
    await Promise.race([deps.stopRequested, failure]);
  } finally {
    deps.readiness?.set(false, 'apply session not running (starting or restarting; see the log)');
    endSession();
    for (const t of timers) clearInterval(t);
    await Promise.allSettled(clusters);
    await producer?.disconnect().catch(() => {});
    await admin?.disconnect().catch(() => {});
    for (const db of connections) await db.end().catch(() => {});
  }
}

/** Longest wait between two tries of a cluster that cannot be reached. */
const CLUSTER_RETRY_MAX_MS = 4_000;

/** Longest a step of joining or leaving a cluster may take before it counts as unreachable. */
const CLUSTER_STEP_MS = 60_000;

/** `step`, or KAFKA_UNAVAILABLE after CLUSTER_STEP_MS. */
async function bounded<T>(what: string, step: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BrabantError('KAFKA_UNAVAILABLE', `${what} took over ${CLUSTER_STEP_MS} ms`)),
      CLUSTER_STEP_MS,
    );
  });
  try {
    return await Promise.race([step(), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A cluster's name in logs and metric labels: its bootstrap servers. */
function clusterLabel(brokers: string[]): string {
  return brokers.join(',');
}

/**
 * The consumer of one cluster, for as long as the session lasts: subscribe, stream, and when the
 * cluster cannot be reached, wait (backoff) and start again, the other clusters unaffected. Its
 * sources' open local transactions are rolled back before a new consumer delivers them again
 * from their start. An error that is not about reaching Kafka fails the session.
 */
async function readCluster(o: {
  deps: ApplySessionDeps;
  src: ClusterSource;
  kafka: Kafka;
  groupId: string;
  newStream: (consumer: Consumer, applierFor: (source: string) => Promise<OriginApplier>) => ChangeStream;
  applierFor: (source: string) => Promise<OriginApplier>;
  appliers: Map<string, Promise<OriginApplier>>;
  sessionEnded: Promise<void>;
  isEnded: () => boolean;
  onRunning: () => void;
  failed: (err: unknown) => void;
}): Promise<void> {
  const { deps, src } = o;
  const { log, metrics, config: c } = deps;
  const cluster = clusterLabel(src.brokers);
  const seen = new Set<string>();
  const applierOf = (source: string) => {
    seen.add(source);
    return o.applierFor(source);
  };
  let attempt = 0;
  let firstRun = true;
  let lastBatch = Date.now();
  const silent = setInterval(
    () => metrics.clusterSilentSeconds.set((Date.now() - lastBatch) / 1000, { cluster }),
    1000,
  );
  try {
    while (!o.isEnded()) {
      const consumer = o.kafka.consumer({
        groupId: o.groupId,
        readUncommitted: false,
        allowAutoTopicCreation: false,
        maxWaitTimeInMs: 50,
        // A killed apply's membership lapses after sessionTimeout; its replacement waits that long.
        sessionTimeout: 10_000,
        heartbeatInterval: 1_000,
        rebalanceTimeout: 20_000,
        // a crash ends this consumer (readCluster starts a new one with its backoff) instead of
        // kafkajs restarting it in a loop of its own
        retry: { retries: 5, restartOnFailure: async () => false },
      });
      const stream = o.newStream(consumer, applierOf);
      let crashed: (err: unknown) => void = () => {};
      const crash = new Promise<unknown>((resolve) => {
        crashed = resolve;
      });
      let problem: unknown;
      const started = Date.now();
      try {
        // kafkajs can wait for ever on a broker that went away mid-request: bound each step
        await bounded(`connecting to Kafka ${cluster}`, async () => {
          const admin = o.kafka.admin();
          try {
            await admin.connect();
            for (const topic of src.topics) await ensureTopic(admin, changeTopicSettings(topic), log);
          } finally {
            await admin.disconnect().catch(() => {});
          }
          await consumer.connect();
          await consumer.subscribe({ topics: src.topics, fromBeginning: true });
        });
        consumer.on(consumer.events.CRASH, (e) => {
          if (!e.payload.restart) crashed(e.payload.error);
        });
        await consumer.run({
          eachBatchAutoResolve: false,
          autoCommit: false,
          partitionsConsumedConcurrently: 1,
          eachBatch: async (payload) => {
            lastBatch = Date.now();
            await stream.eachBatch(payload);
          },
        });
        metrics.clusterUp.set(1, { cluster });
        log.info({ cluster, topics: src.topics }, 'reading change topics from a Kafka cluster');
        if (firstRun) o.onRunning();
        firstRun = false;
        problem = await Promise.race([o.sessionEnded.then(() => undefined), crash]);
        if (problem === undefined) {
          await stream
            .commitAll()
            .catch((err) =>
              log.warn(
                { cluster, err: (err as Error).message },
                'committing offsets at stop failed; a restart reads a little again',
              ),
            );
        }
      } catch (err) {
        problem = err;
      } finally {
        stream.stop();
        await bounded(`leaving Kafka ${cluster}`, () => consumer.disconnect()).catch(() => {});
      }
      if (problem === undefined || o.isEnded()) return;
      const e = classifyKafkaError(problem, `reading ${src.topics.join(', ')} from Kafka ${cluster}`);
      if (e.code !== 'KAFKA_UNAVAILABLE') {
        o.failed(sessionError(problem, c.nodeId));
        return;
      }
      // The new consumer delivers from the committed offsets: open transactions start again.
      for (const source of seen) {
        const a = await o.appliers.get(source);
        if (a?.inTransaction) await a.rollback();
      }
      metrics.clusterUp.set(0, { cluster });
      metrics.clusterRestarts.inc({ cluster });
      attempt = Date.now() - started > 60_000 ? 1 : attempt + 1;
      // at most a few seconds: trying a cluster again is cheap, and a healed link is noticed soon
      const wait = backoffDelay(attempt, {
        initialMs: 500,
        maxMs: Math.min(c.retryMaxMs, CLUSTER_RETRY_MAX_MS),
      });
      log.warn(
        { code: e.code, cluster, topics: src.topics, attempt, retryInMs: wait, error: e.message },
        `KAFKA_UNAVAILABLE: the change topics ${src.topics.join(', ')} cannot be read from Kafka ${cluster}; ` +
          'this cluster is tried again (the other clusters go on, nothing is skipped)',
      );
      await Promise.race([new Promise((r) => setTimeout(r, wait)), o.sessionEnded]);
    }
  } finally {
    clearInterval(silent);
  }
}

/**
 * An error that ended the consumer (thrown while applying, or by Kafka), as the error policy
 * sees it: a session restart for what is transient (a collision that kept coming back included:
 * a new session applies the transaction again), a stop with the fix for the rest.
 */
function sessionError(err: unknown, node: string): BrabantError {
  const d = directiveFor(err, { doing: `applying changes to ${node}` });
  switch (d.kind) {
    case 'retry':
    case 'stop':
      return d.error;
    case 'reapply':
      return new BrabantError(
        'SOURCE_UNAVAILABLE',
        `applying changes to ${node} kept colliding: ${d.reason}`,
        {
          cause: err,
        },
      );
    case 'deadletter':
      return new BrabantError(
        'CATALOG_MISMATCH',
        `applying changes to ${node}: a change cannot be applied (${d.reason}) and could not be set aside`,
        { cause: err },
      );
    default:
      return d satisfies never;
  }
}
