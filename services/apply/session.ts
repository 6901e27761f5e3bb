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
import type { Admin, Kafka, Producer } from 'kafkajs';
import pg from 'pg';
import { ChangeDecoder } from '../protocol/change-decoder.ts';
import { CATALOG_CHANNEL } from '../protocol/ddl.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { applyGroupId, originName } from '../protocol/names.ts';
import {
  ensureDeleteTriggers,
  ensureNodeObjects,
  noteAllColumns,
  refuseParted,
} from '../protocol/node-schema.ts';
import type { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { changeTopic, ensureTopic, sideTopicSettings } from '../protocol/topics.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import { BrabantError } from '../runtime/errors.ts';
import { classifyKafkaError, createKafka } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';
import type { Readiness } from '../runtime/readiness.ts';
import { redactUrl } from '../runtime/redact.ts';
import type { ServiceSecurity } from '../runtime/security.ts';
import { ChangeStream, type StreamMembership } from './change-stream.ts';
import { readCluster, sessionError } from './cluster-reader.ts';
import type { applyConfig } from './config.ts';
import type { ApplyMetrics } from './metrics.ts';
import { OffsetTracker } from './offset-tracker.ts';
import { APPLY_SESSION_OPTIONS, OriginApplier } from './origin-applier.ts';
import {
  loadMembership,
  partedNodes,
  recognizeLostChanges,
  saveOffsets,
  startOffsets,
} from './own-stream.ts';
import { serveReplays } from './replay.ts';
import { pruneResyncedVersions } from './resync.ts';
import { SideTopics } from './side-topics.ts';
import { applySources } from './sources.ts';
import { TargetCatalog } from './target-catalog.ts';
import { pruneTombstones } from './tombstones.ts';

export type ApplyConfig = ConfigOf<typeof applyConfig>;

export interface ApplySessionDeps {
  config: ApplyConfig;
  kafka: Kafka;
  registry: SchemaRegistryClient;
  /** TLS and credentials of its connections (the peer clusters' too: its user exists on each). */
  security: ServiceSecurity;
  log: Logger;
  metrics: ApplyMetrics;
  stopRequested: Promise<void>;
  /** Set ready while every cluster's consumer runs. */
  readiness?: Readiness;
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
    await refuseParted(control, c.nodeId);
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

    // a database that went back in time (a restore) gets its own lost changes from Kafka
    const decoder = new ChangeDecoder(deps.registry);
    const local = sources.find((src) => src.brokers === c.kafkaBrokers)?.topics ?? [];
    await recognizeLostChanges(control, deps.kafka, admin, decoder, {
      nodeId: c.nodeId,
      topics: c.region === '' ? local : local.filter((t) => t === changeTopic(c.region)),
      log,
    }).catch((err) => {
      throw err instanceof BrabantError
        ? err
        : classifyKafkaError(err, 'reading back this node’s own stream');
    });
    const membership: StreamMembership = await loadMembership(control);
    if (membership.ownHorizon !== undefined)
      log.info(
        { horizon: formatLsn(membership.ownHorizon) },
        'own changes up to the horizon are applied from Kafka (this database lost them)',
      );

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
          // tombstone pruning waits for every peer; this node's own lost changes are not a peer
          if (source !== c.nodeId)
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
        void releaseParted(control, appliers, membership, log).catch((err) =>
          log.warn({ err: (err as Error).message }, 'letting go of parted nodes failed'),
        );
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
            : createKafka({
                brokers: src.brokers,
                clientId: `brabant-apply-${c.nodeId}`,
                log,
                ...deps.security.kafka,
              }),
          groupId,
          startOffsets: (clusterAdmin, topics) =>
            startOffsets(control, clusterAdmin, { groupId, topics, nodeId: c.nodeId }),
          newStream: (consumer, applierOf, startAt) =>
            new ChangeStream({
              nodeId: c.nodeId,
              consumer,
              decoder,
              applierFor: applierOf,
              sideTopics,
              tracker: new OffsetTracker(c.offsetCommitMs),
              lastCommitTs,
              registryUrl: c.registryUrl,
              retryMaxMs: c.retryMaxMs,
              runEvents: c.chunkRows,
              deadLetterAt: new Set(c.deadLetterAt),
              streams: membership,
              startAt,
              saveOffsets: (commits) => saveOffsets(control, commits),
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

/**
 * Lets go of the nodes that left the cluster (brabant node part): the applier of each (if this
 * session has one and it is between transactions) releases its origin, which is then dropped;
 * their events are skipped from now on (StreamMembership.parted).
 */
async function releaseParted(
  control: pg.Client,
  appliers: Map<string, Promise<OriginApplier>>,
  membership: StreamMembership,
  log: Logger,
): Promise<void> {
  const parted = await partedNodes(control);
  membership.parted = parted;
  for (const node of parted.keys()) {
    const a = appliers.get(node);
    if (a !== undefined) {
      const applier = await a;
      if (!(await applier.release())) continue;
      appliers.delete(node);
    }
    // (held by another session, e.g. a session of this apply that is ending: tried again next time)
    const res = await control
      .query('select pg_replication_origin_drop(roname) from pg_replication_origin where roname = $1', [
        originName(node),
      ])
      .catch(() => undefined);
    if ((res?.rowCount ?? 0) > 0)
      log.info({ node, origin: originName(node) }, 'parted node let go: its origin dropped');
  }
}
