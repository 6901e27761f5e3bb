/**
 * One capture session: checks and set-up of the node (settings, replica identities, publication,
 * slot), Kafka (topic, fenced transactional producer, read-back of what is already there), then
 * streaming until stopped or an error. The service restarts sessions after retriable errors.
 */

import type { Admin, Kafka } from 'kafkajs';
import pg from 'pg';
import type { Lsn } from '../protocol/lsn.ts';
import { formatLsn, parseLsn } from '../protocol/lsn.ts';
import { captureTransactionalId, publicationName, slotName } from '../protocol/names.ts';
import type { PgTypeInfo } from '../protocol/pg-types.ts';
import type { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { buildTableSchema, type TableSchema } from '../protocol/table-schema.ts';
import { changeTopic, changeTopicSettings, ensureTopic } from '../protocol/topics.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import { failpoint } from '../runtime/failpoints.ts';
import { classifyKafkaError } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';
import { HEARTBEAT_PREFIX } from './assembler.ts';
import {
  ensurePublication,
  ensureSlot,
  parseTableName,
  publicationMissing,
  replicaIdentityProblems,
  resolveTypes,
  serverProblems,
  slotState,
  type TableRef,
  userTables,
} from './catalog.ts';
import type { captureConfig } from './config.ts';
import { ensureDdlCapture, placeSequences } from './ddl-capture.ts';
import { KafkaEventSink, partitionOf, readLastPosition } from './kafka-sink.ts';
import type { CaptureMetrics } from './metrics.ts';
import type { RelationMessage } from './pgoutput/messages.ts';
import { CapturePipeline } from './pipeline.ts';
import { ReplicationStream } from './stream.ts';

export type CaptureConfig = ConfigOf<typeof captureConfig>;

export interface Names {
  topic: string;
  slot: string;
  publication: string;
  transactionalId: string;
}

export function namesFor(c: CaptureConfig): Names {
  return {
    topic: c.topic || changeTopic(c.region),
    slot: c.slot || slotName(c.nodeId),
    publication: c.publication || publicationName(c.nodeId),
    transactionalId: captureTransactionalId(c.nodeId),
  };
}

export interface SessionDeps {
  config: CaptureConfig;
  kafka: Kafka;
  registry: SchemaRegistryClient;
  log: Logger;
  metrics: CaptureMetrics;
  /** Resolves when the service is asked to stop. */
  stopRequested: Promise<void>;
}

/** Checks the node and prepares publication and slot; throws one error listing every problem. */
export async function prepareNode(
  db: pg.Client,
  c: CaptureConfig,
  names: Names,
  log: Logger,
): Promise<TableRef[]> {
  const problems = await serverProblems(db);
  const tables = c.tables.length === 0 ? await userTables(db) : c.tables.map(parseTableName);
  problems.push(...(await replicaIdentityProblems(db, tables)));
  if (problems.length > 0) {
    const code = problems.some((p) => p.includes('replica identity'))
      ? 'REPLICA_IDENTITY_MISSING'
      : 'CONFIG_INVALID';
    throw new BrabantError(code, `node ${c.nodeId} cannot be captured:\n  - ${problems.join('\n  - ')}`);
  }
  const added = await ensurePublication(db, names.publication, c.tables.length === 0 ? 'all' : tables);
  for (const t of added)
    log.warn(
      { table: `${t.schema}.${t.name}`, publication: names.publication },
      'publication lacked a configured table; added it',
    );
  return tables;
}

export async function runSession(deps: SessionDeps): Promise<void> {
  const { config: c, log, metrics } = deps;
  const names = namesFor(c);
  const origin = { region: c.region, node: c.nodeId };
  const db = new pg.Client({ connectionString: c.pgUrl, application_name: `brabant-capture-${c.nodeId}` });
  let admin: Admin | undefined;
  let sink: KafkaEventSink | undefined;
  let stream: ReplicationStream | undefined;
  const timers: NodeJS.Timeout[] = [];
  try {
    try {
      await db.connect();
    } catch (err) {
      throw new BrabantError(
        'SOURCE_UNAVAILABLE',
        `cannot connect to node ${c.nodeId}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    db.on('error', (err) => log.warn({ err }, 'catalog connection error'));
    const tables = await prepareNode(db, c, names, log);
    // DDL travels in the stream too: the node's event triggers emit it in the DDL's transaction
    await ensureDdlCapture(db);
    await placeSequences(db, c, log);

    try {
      admin = deps.kafka.admin();
      await admin.connect();
    } catch (err) {
      throw classifyKafkaError(err, `connecting to Kafka ${c.kafkaBrokers.join(',')}`);
    }
    const partitions = await ensureTopic(
      admin,
      changeTopicSettings(names.topic, {
        partitions: c.partitions,
        maxMessageBytes: c.maxMessageBytes,
        retentionMs: c.retentionMs,
      }),
      log,
    ).catch((err) => {
      throw classifyKafkaError(err, `creating topic ${names.topic}`);
    });
    const partition = partitionOf(c.nodeId, names.topic, partitions);
    // Before fencing anything: a capture streaming from the slot right now is not a zombie.
    const before = await slotState(db, names.slot);
    if (before.exists && before.active) {
      throw new BrabantError(
        'SLOT_IN_USE',
        `replication slot ${names.slot} is in use by backend pid ${before.activePid}: another capture for ${c.nodeId} is running; stop it first`,
      );
    }
    sink = new KafkaEventSink(deps.kafka, {
      transactionalId: names.transactionalId,
      topic: names.topic,
      chunkBytes: Math.max(c.maxMessageBytes / 2, 64 * 1024),
      log,
    });
    await sink.connect();
    const last = await readLastPosition(deps.kafka, admin, {
      topic: names.topic,
      partition,
      nodeId: c.nodeId,
      timeoutMs: 60_000,
      log,
    }).catch((err) => {
      throw err instanceof BrabantError
        ? err
        : classifyKafkaError(err, 'reading back the last committed event');
    });

    const slot = await slotState(db, names.slot);
    if (!slot.exists && last !== undefined && !c.recreateSlot) {
      throw new BrabantError(
        'SLOT_LOST',
        `replication slot ${names.slot} does not exist, but ${names.topic} already holds events of ${c.nodeId} up to commit ` +
          `LSN ${formatLsn(last.commitLsn)}: the slot was dropped and changes since then may be missing from Kafka. ` +
          'To start a new slot from now on anyway, set BRABANT_CAPTURE_RECREATE_SLOT=true',
      );
    }
    const created = await ensureSlot(db, names.slot);
    log.info(
      {
        topic: names.topic,
        partition,
        slot: names.slot,
        slotCreated: created === 'created',
        tables: tables.length,
        resumeAfter: last ? `${formatLsn(last.commitLsn)}#${last.index}` : null,
      },
      'capture session starting',
    );

    const typeCache = new Map<number, PgTypeInfo>();
    const describeRelation = async (msg: RelationMessage): Promise<TableSchema> => {
      const types = await resolveTypes(
        db,
        msg.columns.map((col) => col.typeOid),
        typeCache,
      );
      return buildTableSchema({
        schema: msg.schema,
        name: msg.name,
        columns: msg.columns.map((col) => ({
          name: col.name,
          type: types.get(col.typeOid)!,
          typeMod: col.typeMod,
          isKey: col.isKey,
        })),
      });
    };

    let streamRef: ReplicationStream | undefined;
    const pipeline = new CapturePipeline({
      origin,
      topic: names.topic,
      partition,
      sink: {
        commitBatch: async (messages) => {
          failpoint('capture.before-produce');
          await sink!.commitBatch(messages);
          failpoint('capture.after-commit');
        },
      },
      registerSchema: (subject, schema) => deps.registry.register(subject, schema),
      describeRelation,
      onDurable: (endLsn: Lsn) => {
        streamRef?.confirm(endLsn);
        metrics.durableLsn.set(Number(endLsn));
      },
      limits: {
        maxEvents: c.batchEvents,
        maxBytes: c.batchBytes,
        maxAgeMs: c.batchMs,
        maxMessageBytes: c.maxMessageBytes,
      },
      ...(last ? { skipThrough: last } : {}),
      log,
      metrics,
    });
    stream = new ReplicationStream({
      url: c.pgUrl,
      slot: names.slot,
      publication: names.publication,
      statusIntervalMs: 5000,
      log,
      onMessage: (msg) => pipeline.handle(msg),
    });
    streamRef = stream;
    // Status updates (keepalive answers) need a position from the start: the slot's own.
    const start = await slotState(db, names.slot);
    if (start.confirmedFlush) stream.confirm(parseLsn(start.confirmedFlush));

    const running = stream.run();
    timers.push(
      setInterval(() => void pipeline.tick().catch(() => {}), Math.max(1, Math.floor(c.batchMs / 2))),
    );
    if (c.heartbeatMs > 0) {
      timers.push(
        setInterval(() => {
          db.query('select pg_logical_emit_message(true, $1, $2)', [
            HEARTBEAT_PREFIX,
            JSON.stringify({ node: c.nodeId, at: new Date().toISOString() }),
          ]).catch((err) => log.warn({ err: (err as Error).message }, 'heartbeat failed'));
        }, c.heartbeatMs),
      );
    }
    timers.push(
      setInterval(() => {
        db.query<{ lag: string | null; missing: number }>(
          'select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text as lag from pg_replication_slots where slot_name = $1',
          [names.slot],
        )
          .then((r) => metrics.slotLagBytes.set(Number(r.rows[0]?.lag ?? 0)))
          .catch(() => {});
        if (c.tables.length > 0) {
          publicationMissing(db, names.publication, tables)
            .then((missing) => {
              for (const t of missing)
                log.error(
                  { table: `${t.schema}.${t.name}`, publication: names.publication },
                  'a configured table was removed from the publication: its changes are not captured; run ALTER PUBLICATION … ADD TABLE and restart capture',
                );
            })
            .catch(() => {});
        }
      }, 5000),
    );

    const stopped = deps.stopRequested.then(() => 'stop' as const);
    const outcome = await Promise.race([running.then(() => 'ended' as const), stopped]);
    if (outcome === 'stop') {
      log.info({ pending: pipeline.pendingEvents }, 'stopping: finishing the current batch');
      for (const t of timers) clearInterval(t);
      stream.drain();
      await pipeline.flush();
      await stream.stop();
      await running.catch(() => {});
    }
  } finally {
    for (const t of timers) clearInterval(t);
    await stream?.stop().catch(() => {});
    await sink?.disconnect();
    await admin?.disconnect().catch(() => {});
    await db.end().catch(() => {});
  }
}
