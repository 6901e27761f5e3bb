/**
 * One apply session (wiring): the node's own objects (tombstones, conflict log, delete
 * triggers), one connection and replication-origin session per source node, the side topics,
 * and a read_committed consumer group over the change topics whose batches the change stream
 * hands to the appliers. An error ends the session; the error policy says whether the service
 * starts a new one (the node, Kafka or the registry away) or stops (a person must act).
 */
import type { Admin, Kafka, Producer } from 'kafkajs';
import pg from 'pg';
import { ChangeDecoder } from '../protocol/change-decoder.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { applyGroupId } from '../protocol/names.ts';
import { ensureDeleteTriggers, ensureNodeObjects, noteAllColumns } from '../protocol/node-schema.ts';
import type { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { changeTopic, changeTopicSettings, ensureTopic, sideTopicSettings } from '../protocol/topics.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import { BrabantError } from '../runtime/errors.ts';
import { classifyKafkaError } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';
import { redactUrl } from '../runtime/redact.ts';
import { ChangeStream } from './change-stream.ts';
import type { applyConfig } from './config.ts';
import type { ApplyMetrics } from './metrics.ts';
import { OffsetTracker } from './offset-tracker.ts';
import { APPLY_SESSION_OPTIONS, OriginApplier } from './origin-applier.ts';
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
}

export function applyTopics(c: ApplyConfig): string[] {
  const topics = c.topics.length > 0 ? c.topics : c.regions.map(changeTopic);
  if (topics.length === 0) {
    throw new BrabantError(
      'CONFIG_INVALID',
      'apply has nothing to consume: set BRABANT_APPLY_REGIONS (e.g. vlaanderen,wallonie) or BRABANT_APPLY_TOPICS',
    );
  }
  return topics;
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
  const topics = applyTopics(c);
  const groupId = c.groupId || applyGroupId(c.nodeId);
  const control = await connect(c.pgUrl, `brabant-apply-${c.nodeId}`);
  const connections: pg.Client[] = [control];
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  let stream: ChangeStream | undefined;
  const consumer = deps.kafka.consumer({
    groupId,
    readUncommitted: false,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 50,
    // A killed apply's membership lapses after sessionTimeout; its replacement waits that long.
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    rebalanceTimeout: 20_000,
    // a crash ends the session (the service's supervisor starts a new one with its backoff)
    // instead of kafkajs restarting the consumer in a loop of its own
    retry: { retries: 5, restartOnFailure: async () => false },
  });
  let failed: (err: unknown) => void = () => {};
  const failure = new Promise<never>((_, reject) => {
    failed = reject;
  });
  // a failure before the session waits on it is still seen there, not reported as unhandled
  failure.catch(() => {});
  const lost = (err: Error) =>
    failed(new BrabantError('SOURCE_UNAVAILABLE', `node connection lost: ${err.message}`, { cause: err }));
  const timers: NodeJS.Timeout[] = [];
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
      for (const topic of topics) await ensureTopic(admin, changeTopicSettings(topic), log);
      for (const side of sideTopicSettings()) await ensureTopic(admin, side, log);
      producer = deps.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: true });
    } catch (err) {
      throw classifyKafkaError(err, `connecting to Kafka ${c.kafkaBrokers.join(',')}`);
    }

    const catalog = new TargetCatalog(control);
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

    const lastCommitTs = new Map<string, bigint>();
    stream = new ChangeStream({
      nodeId: c.nodeId,
      consumer,
      decoder: new ChangeDecoder(deps.registry),
      applierFor,
      sideTopics: new SideTopics(producer, c.nodeId, metrics),
      tracker: new OffsetTracker(c.offsetCommitMs),
      lastCommitTs,
      registryUrl: c.registryUrl,
      retryMaxMs: c.retryMaxMs,
      deadLetterAt: new Set(c.deadLetterAt),
      onFailure: (err) => failed(sessionError(err, c.nodeId)),
      log,
      metrics,
    });

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
      }, c.pruneIntervalMs),
    );

    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart) failed(sessionError(e.payload.error, c.nodeId));
    });
    await consumer.run({
      eachBatchAutoResolve: false,
      autoCommit: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: stream.eachBatch,
    });
    log.info({ topics, group: groupId }, 'apply session running');
    await Promise.race([deps.stopRequested, failure]);
    await stream
      .commitAll()
      .catch((err) =>
        log.warn(
          { err: (err as Error).message },
          'committing offsets at stop failed; a restart reads a little again',
        ),
      );
  } finally {
    for (const t of timers) clearInterval(t);
    stream?.stop();
    await consumer.disconnect().catch(() => {});
    await producer?.disconnect().catch(() => {});
    await admin?.disconnect().catch(() => {});
    for (const db of connections) await db.end().catch(() => {});
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
