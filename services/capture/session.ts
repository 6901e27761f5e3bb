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
import { refuseParted } from '../protocol/node-schema.ts';
import type { PgTypeInfo } from '../protocol/pg-types.ts';
import { partitionOf, readLastEvent } from '../protocol/read-back.ts';
import type { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { buildTableSchema, type TableSchema } from '../protocol/table-schema.ts';
import {
  changeTopic,
  changeTopicSettings,
  DEAD_LETTER_TOPIC,
  ensureTopic,
  sideTopicSettings,
} from '../protocol/topics.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import { BrabantError } from '../runtime/errors.ts';
import { failpoint } from '../runtime/failpoints.ts';
import { classifyKafkaError } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';
import type { Readiness } from '../runtime/readiness.ts';
import { redactUrl } from '../runtime/redact.ts';
import type { ServiceSecurity } from '../runtime/security.ts';
import { HEARTBEAT_PREFIX } from './assembler.ts';
import {
  ensureSlot,
  missingTables,
  parseTableName,
  quoteIdent,
  resolveTypes,
  serverProblems,
  slotState,
  type TableRef,
  userTables,
} from './catalog.ts';
import type { captureConfig } from './config.ts';
import { ensureDdlCapture, placeSequences } from './ddl-capture.ts';
import { KafkaEventSink } from './kafka-sink.ts';
import { movePastLostChanges } from './lost-changes.ts';
import type { CaptureMetrics } from './metrics.ts';
import type { RelationMessage } from './pgoutput/messages.ts';
import { CapturePipeline } from './pipeline.ts';
import { ensurePublications, type PublicationState, publicationTables, reconcile } from './publications.ts';
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
  /** TLS and credentials of its connections. */
  security: ServiceSecurity;
  log: Logger;
  metrics: CaptureMetrics;
  /** Resolves when the service is asked to stop. */
  stopRequested: Promise<void>;
  /** Set ready while the slot streams. */
  readiness?: Readiness;
}

/** Checks the node and prepares the publications; throws one error listing every problem. */
export async function prepareNode(
  db: pg.Client,
  c: CaptureConfig,
  names: Names,
  log: Logger,
  metrics: CaptureMetrics,
): Promise<{ tables: TableRef[]; publications: PublicationState }> {
  const problems = await serverProblems(db);
  const configured: TableRef[] | 'all' = c.tables.length === 0 ? 'all' : c.tables.map(parseTableName);
  if (configured !== 'all') problems.push(...(await missingTables(db, configured)));
  if (problems.length > 0)
    throw new BrabantError(
      'CONFIG_INVALID',
      `node ${c.nodeId} cannot be captured:\n  - ${problems.join('\n  - ')}`,
    );
  const published = async () => {
    const both = await Promise.all(
      [names.publication, `${names.publication}_inserts`].map((p) => publicationTables(db, p)),
    );
    return new Set(both.flat().map((t) => `${t.schema}.${t.name}`));
  };
  const before = configured === 'all' ? undefined : await published();
  const publications = await ensurePublications(db, names.publication, configured);
  if (before !== undefined && configured !== 'all')
    for (const t of configured)
      if (!before.has(`${t.schema}.${t.name}`))
        log.warn(
          { table: `${t.schema}.${t.name}`, publication: names.publication },
          'publication lacked a configured table; added it',
        );
  for (const t of publications.insertOnly)
    log.warn(
      { table: `${t.schema}.${t.name}`, publication: publications.inserts },
      `table ${t.schema}.${t.name} has no replica identity: only its inserts and truncates are captured (its updates and ` +
        `deletes stay on this node); add a primary key or run ALTER TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.name)} ` +
        'REPLICA IDENTITY FULL to capture them too',
    );
  metrics.insertOnlyTables.set(publications.insertOnly.length);
  const tables = configured === 'all' ? await userTables(db) : configured;
  return { tables, publications };
}

/**
 * Runs one session; resolves 'restart' when it stopped on purpose to stream with both
 * publications (see publications.ts, usableFrom), and the caller should start the next one now.
 */
export async function runSession(
  deps: SessionDeps,
  opts: { passedInsertsCreation?: boolean } = {},
): Promise<'done' | 'restart'> {
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
      // a refused password, pg_hba's no, a certificate not trusted: stop with the fix; else retry
      const d = directiveFor(err, { doing: `connecting to node ${c.nodeId} at ${redactUrl(c.pgUrl)}` });
      throw d.kind === 'stop' || d.kind === 'retry'
        ? d.error
        : new BrabantError(
            'SOURCE_UNAVAILABLE',
            `cannot connect to node ${c.nodeId}: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
    }
    db.on('error', (err) => log.warn({ err }, 'catalog connection error'));
    const { tables, publications } = await prepareNode(db, c, names, log, metrics);
    // DDL travels in the stream too: the node's event triggers emit it in the DDL's transaction
    await ensureDdlCapture(db);
    await placeSequences(db, c, log);

    try {
      admin = deps.kafka.admin();
      await admin.connect();
    } catch (err) {
      throw classifyKafkaError(err, `connecting to Kafka ${c.kafkaBrokers.join(',')}`);
    }
    for (const side of sideTopicSettings())
      if (side.topic === DEAD_LETTER_TOPIC)
        await ensureTopic(admin, side, log).catch((err) => {
          throw classifyKafkaError(err, `creating topic ${side.topic}`);
        });
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
      // under the topic's limit per batch (with room for the batch header), at most half a MB per send
      chunkBytes: Math.min(c.maxMessageBytes - 512, Math.max(c.maxMessageBytes / 2, 64 * 1024)),
      log,
    });
    await sink.connect();
    const lastEvent = await readLastEvent(deps.kafka, admin, {
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
    const last = lastEvent?.position;

    await refuseParted(db, c.nodeId);
    // A database restored from a backup (or rebuilt) lacks own changes in Kafka (lost-changes.ts).
    const lostUpTo =
      lastEvent === undefined
        ? undefined
        : await movePastLostChanges(
            db,
            { nodeId: c.nodeId, slot: names.slot, registry: deps.registry, log },
            lastEvent,
          );
    const slot = await slotState(db, names.slot);
    if (!slot.exists && last !== undefined && !c.recreateSlot && lostUpTo === undefined) {
      throw new BrabantError(
        'SLOT_LOST',
        `replication slot ${names.slot} does not exist, but ${names.topic} already holds events of ${c.nodeId} up to commit ` +
          `LSN ${formatLsn(last.commitLsn)}: the slot was dropped and changes since then may be missing from Kafka, and so from ` +
          `every peer. To repair: start capture with a new slot (BRABANT_CAPTURE_RECREATE_SLOT=true), then re-send the node's ` +
          `current rows with \`brabant resync ${c.nodeId}\` (peers keep what is newer; docs/capture.md, "Resync")`,
      );
    }
    const created = await ensureSlot(db, names.slot);
    if (created === 'created' && last !== undefined)
      log.warn(
        { code: 'SLOT_LOST', slot: names.slot, lastInKafka: formatLsn(last.commitLsn) },
        `replication slot ${names.slot} was created anew although ${names.topic} holds events of ${c.nodeId}: changes ` +
          `committed between the old slot's loss and now are missing from every peer; run \`brabant resync ${c.nodeId}\` ` +
          'to re-send the current rows (docs/capture.md, "Resync")',
      );
    // PostgreSQL 16+ leaves out, at the source, the transactions apply wrote (pgoutput origin 'none')
    const originNone =
      Number(
        (await db.query<{ v: string }>("select current_setting('server_version_num') as v")).rows[0]?.v ?? 0,
      ) >= 160000;
    log.info(
      {
        topic: names.topic,
        partition,
        slot: names.slot,
        slotCreated: created === 'created',
        originNone,
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
          metrics.lastCommitTime.set(Date.now() / 1000);
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
    // Status updates (keepalive answers) need a position from the start: the slot's own.
    const start = await slotState(db, names.slot);
    const startLsn = start.confirmedFlush ? parseLsn(start.confirmedFlush) : undefined;
    // A slot with changes from before the inserts publication existed streams without it until
    // it reaches that point, then the session starts again with both (see publications.ts).
    // (the slot stays before that point when nothing was written in between: the session that
    // reached it says so)
    const both =
      opts.passedInsertsCreation === true ||
      (startLsn !== undefined && startLsn >= publications.insertsUsableFrom);
    let restart = false;
    if (!both)
      log.info(
        { slot: names.slot, until: formatLsn(publications.insertsUsableFrom) },
        `slot holds changes from before publication ${publications.inserts} existed: streaming without it until then`,
      );
    const encoding = await db.query<{ e: string }>(
      'select pg_encoding_to_char(encoding) as e from pg_database where datname = current_database()',
    );
    stream = new ReplicationStream({
      url: c.pgUrl,
      originNone,
      slot: names.slot,
      node: c.nodeId,
      rawBytes: encoding.rows[0]?.e === 'SQL_ASCII',
      publications: both ? [publications.main, publications.inserts] : [publications.main],
      statusIntervalMs: 5000,
      log,
      onMessage: async (msg) => {
        if (!both && !restart && msg.tag === 'begin' && msg.finalLsn >= publications.insertsUsableFrom) {
          restart = true;
          await pipeline.flush();
          void stream?.stop();
          return;
        }
        if (!restart) await pipeline.handle(msg);
      },
    });
    streamRef = stream;
    if (startLsn !== undefined) stream.confirm(startLsn);

    const running = stream.run();
    deps.readiness?.set(true, `streaming slot ${names.slot} into ${names.topic}`);
    // A batch the timer flushes can fail too (Kafka gone): that ends the session like any other
    // failure, so it starts again with a new producer. Swallowed, it left capture stuck for good
    // after a kill -9 of the broker: every later flush failed in silence on the broken producer.
    let tickFailed: (err: unknown) => void = () => {};
    const flushFailed = new Promise<never>((_, reject) => {
      tickFailed = reject;
    });
    flushFailed.catch(() => {});
    timers.push(
      setInterval(
        () => void pipeline.tick().catch((err) => tickFailed(err)),
        Math.max(1, Math.floor(c.batchMs / 2)),
      ),
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
      }, 5000),
    );
    // The event trigger sorts tables at every DDL; this catches what it cannot see (a trigger
    // disabled, a publication edited by hand).
    timers.push(
      setInterval(() => {
        reconcile(db, names.publication, c.tables.length === 0 ? 'all' : tables)
          .then(() => publicationTables(db, publications.inserts))
          .then((t) => metrics.insertOnlyTables.set(t.length))
          .catch((err) => log.warn({ err: (err as Error).message }, 'reconciling the publications failed'));
      }, 60_000),
    );

    const stopped = deps.stopRequested.then(() => 'stop' as const);
    const outcome = await Promise.race([running.then(() => 'ended' as const), stopped, flushFailed]);
    if (restart) return 'restart';
    if (outcome === 'stop') {
      log.info({ pending: pipeline.pendingEvents }, 'stopping: finishing the current batch');
      for (const t of timers) clearInterval(t);
      stream.drain();
      await pipeline.flush();
      await stream.stop();
      await running.catch(() => {});
    }
    return 'done';
  } finally {
    deps.readiness?.set(false, 'capture session not streaming (starting or restarting; see the log)');
    for (const t of timers) clearInterval(t);
    await stream?.stop().catch(() => {});
    await sink?.disconnect();
    await admin?.disconnect().catch(() => {});
    await db.end().catch(() => {});
  }
}
