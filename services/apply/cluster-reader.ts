/**
 * The consumer of one Kafka cluster for the length of an apply session: it subscribes, streams,
 * and when the cluster cannot be reached waits (backoff) and starts again, the other clusters
 * unaffected; and the error policy's view of what ended a consumer.
 */
import type { Admin, Consumer, Kafka } from 'kafkajs';
import { changeTopicSettings, ensureTopic } from '../protocol/topics.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import { BrabantError } from '../runtime/errors.ts';
import { classifyKafkaError } from '../runtime/kafka.ts';
import { SQLSTATE, sqlstateOf } from '../runtime/sqlstate.ts';
import { backoffDelay } from '../runtime/supervise.ts';
import type { ChangeStream } from './change-stream.ts';
import type { OriginApplier } from './origin-applier.ts';
import type { ApplySessionDeps } from './session.ts';
import type { ClusterSource } from './sources.ts';

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
 * Most bytes of one partition a fetch returns (kafkajs's default is 1 MiB): about ten fast groups
 * of W1's rows. 8 MiB was no faster in W1 and took apply's peak RSS in W3 to ~400 MiB.
 */
const FETCH_BYTES_PER_PARTITION = 4 * 1024 * 1024;

/** Session restarts for a stale catalog: a few in a while are DDL on the node, more a fault to stop on. */

export const staleCatalog = {
  times: [] as number[],
  /** Notes one at `now`; whether the session may start again for it. */
  note(now: number): boolean {
    this.times = this.times.filter((t) => now - t < STALE_CATALOG_WINDOW_MS);
    this.times.push(now);
    return this.times.length <= STALE_CATALOG_RESTARTS;
  },
};
const STALE_CATALOG_WINDOW_MS = 5 * 60_000;
const STALE_CATALOG_RESTARTS = 3;

/**
 * The consumer of one cluster, for as long as the session lasts: subscribe, stream, and when the
 * cluster cannot be reached, wait (backoff) and start again, the other clusters unaffected. Its
 * sources' open local transactions are rolled back before a new consumer delivers them again
 * from their start. An error that is not about reaching Kafka fails the session.
 */
export async function readCluster(o: {
  deps: ApplySessionDeps;
  src: ClusterSource;
  kafka: Kafka;
  groupId: string;
  newStream: (
    consumer: Consumer,
    applierFor: (source: string) => Promise<OriginApplier>,
    startAt: Map<string, bigint>,
  ) => ChangeStream;
  /** Where partitions of these topics start, when before the group's offsets (own-stream.ts). */
  startOffsets: (admin: Admin, topics: string[]) => Promise<Map<string, bigint>>;
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
        // a catch-up reads many runs per batch, so decoding the next overlaps applying the last
        // (change-stream.ts); kafkajs's 1 MiB held about two fast groups
        maxBytesPerPartition: FETCH_BYTES_PER_PARTITION,
        maxBytes: 4 * FETCH_BYTES_PER_PARTITION,
        // A killed apply's membership lapses after sessionTimeout; its replacement waits that long.
        sessionTimeout: 10_000,
        heartbeatInterval: 1_000,
        rebalanceTimeout: 20_000,
        // a crash ends this consumer (readCluster starts a new one with its backoff) instead of
        // kafkajs restarting it in a loop of its own
        retry: { retries: 5, restartOnFailure: async () => false },
      });
      const startAt = new Map<string, bigint>();
      const stream = o.newStream(consumer, applierOf, startAt);
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
            for (const [k, v] of await o.startOffsets(admin, src.topics)) startAt.set(k, v);
          } finally {
            await admin.disconnect().catch(() => {});
          }
          await consumer.connect();
          await consumer.subscribe({ topics: src.topics, fromBeginning: true });
        });
        consumer.on(consumer.events.CRASH, (e) => {
          if (!e.payload.restart) crashed(e.payload.error);
        });
        consumer.on(consumer.events.GROUP_JOIN, (e) => stream.seekStarts(e.payload.memberAssignment));
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
export function sessionError(err: unknown, node: string, now = Date.now()): BrabantError {
  const d = directiveFor(err, { doing: `applying changes to ${node}` });
  switch (d.kind) {
    case 'retry':
      return d.error;
    case 'stop':
      // a column gone under an open transaction (DDL on this node between the catalog's read and
      // the write): a new session reads every table anew; stopped only if it keeps coming back
      if (sqlstateOf(err) === SQLSTATE.UNDEFINED_COLUMN && staleCatalog.note(now))
        return new BrabantError(
          'CATALOG_CHANGED',
          `applying changes to ${node}: ${d.error.message.replace(/^CATALOG_MISMATCH: /, '')}; a table changed on this node while apply held its former shape: the session starts again and reads it anew`,
          { cause: err },
        );
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
