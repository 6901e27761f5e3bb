/**
 * One apply session: node objects (tombstones, conflict log, delete triggers), one connection
 * and replication-origin session per source node, and a read_committed consumer group over the
 * change topics. Each message is decoded, handed to its source's applier in stream order, and its
 * offset is committed only once no source transaction that started at or before it is still open.
 */
import type { Admin, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import pg from 'pg';
import { ChangeDecoder, type DecodedChange, type RowChange } from '../protocol/change-decoder.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { applyGroupId } from '../protocol/names.ts';
import type { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import {
  CONFLICTS_TOPIC,
  changeTopic,
  changeTopicSettings,
  DEAD_LETTER_TOPIC,
  ensureTopic,
  sideTopicSettings,
} from '../protocol/topics.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError, isBrabantError } from '../runtime/errors.ts';
import { failpoint } from '../runtime/failpoints.ts';
import { classifyKafkaError } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';
import type { applyConfig } from './config.ts';
import type { ApplyMetrics } from './metrics.ts';
import { ensureDeleteTriggers, ensureNodeObjects } from './node-setup.ts';
import { APPLY_SESSION_OPTIONS, OriginApplier, type TxOutcome } from './origin-applier.ts';
import type { ConflictRecord } from './outcome/conflict-log.ts';
import { TargetCatalog } from './target-catalog.ts';

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

const connect = async (url: string, name: string): Promise<pg.Client> => {
  const db = new pg.Client({ connectionString: url, options: APPLY_SESSION_OPTIONS, application_name: name });
  try {
    await db.connect();
  } catch (err) {
    throw new BrabantError(
      'SOURCE_UNAVAILABLE',
      `cannot connect to the node at ${redact(url)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return db;
};

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

export async function runApplySession(deps: ApplySessionDeps): Promise<void> {
  const { config: c, log, metrics } = deps;
  const topics = applyTopics(c);
  const control = await connect(c.pgUrl, `brabant-apply-${c.nodeId}`);
  const connections: pg.Client[] = [control];
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  const consumer = deps.kafka.consumer({
    groupId: c.groupId || applyGroupId(c.nodeId),
    readUncommitted: false,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 50,
    // A killed apply's membership lapses after sessionTimeout; its replacement waits that long.
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    rebalanceTimeout: 20_000,
    retry: { retries: 5 },
  });
  let failed: (err: unknown) => void = () => {};
  const failure = new Promise<never>((_, reject) => {
    failed = reject;
  });
  const timers: NodeJS.Timeout[] = [];
  try {
    control.on('error', (err) =>
      failed(new BrabantError('SOURCE_UNAVAILABLE', `node connection lost: ${err.message}`)),
    );
    await ensureNodeObjects(control);
    const triggers = await ensureDeleteTriggers(control);
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
    const decoder = new ChangeDecoder(deps.registry);
    const appliers = new Map<string, Promise<OriginApplier>>();
    const applierFor = (source: string): Promise<OriginApplier> => {
      let a = appliers.get(source);
      if (a === undefined) {
        a = (async () => {
          const db = await connect(c.pgUrl, `brabant-apply-${c.nodeId}-from-${source}`);
          connections.push(db);
          db.on('error', (err) =>
            failed(new BrabantError('SOURCE_UNAVAILABLE', `node connection lost: ${err.message}`)),
          );
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
    // the conflicts and dead letters of a run's transactions: one send each (not one per transaction)
    const publish = async (source: string, outcomes: TxOutcome[]) => {
      if (outcomes.length === 0) return;
      lastCommitTs.set(source, outcomes[outcomes.length - 1]!.commitTs);
      const messages = outcomes.flatMap((o) =>
        o.conflicts.map((x) => ({ key: c.nodeId, value: JSON.stringify(conflictJson(c.nodeId, x)) })),
      );
      if (messages.length > 0) await producer!.send({ topic: CONFLICTS_TOPIC, messages });
      const deadLetters = outcomes.flatMap((o) => o.deadLetters);
      if (deadLetters.length > 0) {
        await producer!.send({
          topic: DEAD_LETTER_TOPIC,
          messages: deadLetters.map((d) => ({
            key: source,
            value: JSON.stringify(changeJson(d.change)),
            headers: {
              'brabant.reason': d.reason,
              'brabant.target-node': c.nodeId,
              'brabant.commit-lsn': String(d.change.tx.commitLsn),
              'brabant.index': String(d.change.tx.index),
            },
          })),
        });
        for (const d of deadLetters) metrics.deadLetters.inc({ reason: d.reason.split(':')[0]! });
      }
    };

    // offsets: per partition, the first offset of every source transaction still open in it, and
    // the highest offset below all of them that was handled (safe to commit)
    const openFirst = new Map<string, Map<string, string>>();
    const resolved = new Map<string, bigint>();
    const eachBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
      const part = `${batch.topic}/${batch.partition}`;
      const open = openFirst.get(part) ?? new Map<string, string>();
      openFirst.set(part, open);
      // Two positions per partition: kafkajs fetches on from every message handled (resolveOffset),
      // but the offset committed to the group stays below the first event of any source
      // transaction still open, so a restart delivers such a transaction again from its start.
      const markDone = (offset: string) => {
        resolveOffset(offset);
        const firsts = [...open.values()].map(BigInt);
        const safe = firsts.length > 0 ? firsts.reduce((a, b) => (a < b ? a : b)) - 1n : BigInt(offset);
        if (safe > (resolved.get(part) ?? -1n)) resolved.set(part, safe);
      };
      // Consecutive events of one source form a run, handed to its applier at once (the fast
      // path applies many small source transactions per round trip).
      let run: { source: string; changes: DecodedChange[]; offsets: string[] } | undefined;
      const flush = async () => {
        if (run === undefined) return;
        const { source, changes, offsets } = run;
        run = undefined;
        const applier = await applierFor(source);
        const openBefore = applier.inTransaction ? applier.openCommitLsn : undefined;
        const outcomes = await applier.handleMany(changes);
        for (const _ of outcomes) failpoint('apply.after-commit');
        await publish(source, outcomes);
        if (!applier.inTransaction) open.delete(source);
        else if (applier.openCommitLsn !== openBefore || !open.has(source)) {
          const first = changes.findIndex((x) => x.tx.commitLsn === applier.openCommitLsn);
          open.set(source, offsets[Math.max(first, 0)]!);
        }
        markDone(offsets[offsets.length - 1]!);
        await heartbeat();
      };
      for (const m of batch.messages) {
        if (!isRunning() || isStale()) return;
        const source = m.key?.toString();
        if (source === undefined || source === c.nodeId || m.value === null) {
          await flush();
          markDone(m.offset);
          continue;
        }
        let change: DecodedChange;
        try {
          change = await decoder.decode(m.value);
        } catch (err) {
          if (!isBrabantError(err, 'UNDECODABLE')) throw err;
          await flush();
          log.error(
            { source, topic: batch.topic, partition: batch.partition, offset: m.offset, reason: err.message },
            'poison message sent to the dead-letter topic',
          );
          await producer!.send({
            topic: DEAD_LETTER_TOPIC,
            messages: [
              {
                key: source,
                value: m.value,
                headers: {
                  'brabant.reason': err.message,
                  'brabant.source-topic': batch.topic,
                  'brabant.source-partition': String(batch.partition),
                  'brabant.source-offset': m.offset,
                  'brabant.target-node': c.nodeId,
                },
              },
            ],
          });
          metrics.deadLetters.inc({ reason: 'undecodable' });
          markDone(m.offset);
          continue;
        }
        if (run !== undefined && run.source !== source) await flush();
        if (run === undefined) run = { source, changes: [], offsets: [] };
        run.changes.push(change);
        run.offsets.push(m.offset);
      }
      await flush();
      await commitSafe(batch.topic, batch.partition);
    };
    // Group offsets only shorten what a restart reads again (the origin's progress says what was
    // applied), so they are committed at most every offsetCommitMs per partition, and on stop:
    // each commit is a write to __consumer_offsets that the broker pays for.
    const committed = new Map<string, bigint>();
    const committedAt = new Map<string, number>();
    const commitSafe = async (topic: string, partition: number, force = false) => {
      const part = `${topic}/${partition}`;
      const safe = resolved.get(part);
      if (safe === undefined || safe <= (committed.get(part) ?? -1n)) return;
      if (!force && Date.now() - (committedAt.get(part) ?? 0) < c.offsetCommitMs) return;
      await consumer.commitOffsets([{ topic, partition, offset: String(safe + 1n) }]);
      committed.set(part, safe);
      committedAt.set(part, Date.now());
    };
    const commitAll = async () => {
      for (const part of resolved.keys()) {
        const at = part.lastIndexOf('/');
        await commitSafe(part.slice(0, at), Number(part.slice(at + 1)), true);
      }
    };

    // tombstones: kept until every known peer applied past them (plus a margin for clock skew)
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
      if (!e.payload.restart) failed(classifyCrash(e.payload.error));
    });
    await consumer.run({
      eachBatchAutoResolve: false,
      autoCommit: false,
      partitionsConsumedConcurrently: 1,
      eachBatch,
    });
    log.info({ topics, group: c.groupId || applyGroupId(c.nodeId) }, 'apply session running');
    await Promise.race([deps.stopRequested, failure]);
    await commitAll().catch((err) =>
      log.warn(
        { err: (err as Error).message },
        'committing offsets at stop failed; a restart reads a little again',
      ),
    );
  } finally {
    for (const t of timers) clearInterval(t);
    await consumer.disconnect().catch(() => {});
    await producer?.disconnect().catch(() => {});
    await admin?.disconnect().catch(() => {});
    for (const db of connections) await db.end().catch(() => {});
  }
}

function classifyCrash(err: unknown): BrabantError {
  if (err instanceof BrabantError) return err;
  if (
    (err as { code?: string })?.code !== undefined &&
    typeof (err as { code?: unknown }).code === 'string'
  ) {
    return new BrabantError('SOURCE_UNAVAILABLE', `applying failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return classifyKafkaError(err, 'consuming change topics');
}

async function pruneTombstones(
  db: pg.Client,
  lastCommitTs: Map<string, bigint>,
  marginMs: number,
): Promise<number> {
  // the peers of this database (replication origins are per server and may belong to other databases)
  const peers = (await db.query<{ node: string }>('select node from brabant.peers')).rows.map((r) => r.node);
  if (peers.length === 0 || peers.some((p) => !lastCommitTs.has(p))) return 0;
  const horizon =
    peers.map((p) => lastCommitTs.get(p)!).reduce((a, b) => (a < b ? a : b)) - BigInt(marginMs) * 1000n;
  const res = await db.query(
    `delete from brabant.tombstones where (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000000)::int8 < $1::int8`,
    [horizon.toString()],
  );
  return res.rowCount ?? 0;
}

function conflictJson(node: string, x: ConflictRecord) {
  return {
    node,
    kind: x.kind,
    resolution: x.resolution,
    table: x.table,
    key: x.key,
    local: { row: x.localRow, commitTs: x.localTs?.toString() ?? null, node: x.localNode },
    remote: {
      row: x.remoteRow,
      commitTs: x.remoteTs.toString(),
      node: x.remoteNode,
      commitLsn: formatLsn(x.remoteCommitLsn),
    },
  };
}

function changeJson(c: RowChange) {
  return JSON.parse(
    JSON.stringify(c, (_k, v) =>
      typeof v === 'bigint' ? v.toString() : typeof v === 'symbol' ? '(unchanged toast)' : v,
    ),
  );
}
