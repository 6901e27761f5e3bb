/**
 * Capture's side of Kafka: the change topic, a transactional producer (one Kafka transaction per
 * batch; the transactional id fences a zombie capture of the same node), and the read-back of the
 * last event of this node that is committed in the topic (what a restart must not send again).
 */
import { randomBytes } from 'node:crypto';
import type { Admin, Kafka, Message, Producer } from 'kafkajs';
import { decodePosition } from '../protocol/headers.ts';
import type { StreamPosition } from '../protocol/lsn.ts';
import { readbackGroupPrefix } from '../protocol/names.ts';
import { BrabantError } from '../runtime/errors.ts';
import { classifyKafkaError, Partitioners } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';

/** A record and the topic it goes to: the dead-letter topic, or (no topic) the change topic. */
export type OutMessage = Message & { topic?: string };

/** What the pipeline needs from Kafka; a fake in unit tests. */
export interface EventSink {
  /** Sends the messages in one Kafka transaction and commits it, or throws (nothing is then visible). */
  commitBatch(messages: OutMessage[]): Promise<void>;
}

/** The partition of a node's stream: Kafka's default (murmur2) partitioner on the node id, as Java clients do. */
export function partitionOf(nodeId: string, topic: string, partitions: number): number {
  const partitioner = Partitioners.DefaultPartitioner();
  return partitioner({
    topic,
    partitionMetadata: Array.from({ length: partitions }, (_, i) => ({
      partitionId: i,
      leader: 0,
      partitionErrorCode: 0,
      replicas: [0],
      isr: [0],
    })),
    message: { key: nodeId, value: null },
  });
}

/** A record's bytes in a batch: value, key, headers and the per-record framing. */
function recordBytes(m: Message): number {
  let n = 32 + ((m.value as Buffer | null)?.length ?? 0) + (m.key ? Buffer.byteLength(m.key as string) : 0);
  for (const [k, v] of Object.entries(m.headers ?? {}))
    n += 8 + Buffer.byteLength(k) + Buffer.byteLength(String(v));
  return n;
}

export class KafkaEventSink implements EventSink {
  private producer: Producer | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly opts: {
      transactionalId: string;
      topic: string;
      /**
       * Messages are sent in chunks of at most this many bytes (values, keys and headers) inside
       * the transaction: one send is one record batch per partition, and the broker refuses a
       * batch over max.message.bytes, so keep this under it (a larger record goes alone).
       */
      chunkBytes: number;
      log: Logger;
    },
  ) {}

  async connect(): Promise<void> {
    this.producer = this.kafka.producer({
      transactionalId: this.opts.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 60_000,
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: { retries: 3 },
    });
    try {
      await this.producer.connect();
      // kafkajs runs InitProducerId for the transactional id only when the first transaction
      // begins. Begin (and abort) an empty one now: that bumps the epoch, so an older producer
      // with this id is fenced and its open transaction aborted before we read back the topic.
      const tx = await this.producer.transaction();
      await tx.abort();
    } catch (err) {
      throw classifyKafkaError(err, 'connecting the transactional producer');
    }
  }

  async commitBatch(messages: OutMessage[]): Promise<void> {
    const producer = this.producer;
    if (producer === undefined) throw new Error('KafkaEventSink used before connect()');
    let tx: Awaited<ReturnType<Producer['transaction']>> | undefined;
    try {
      tx = await producer.transaction();
      let chunk: Message[] = [];
      let topic = this.opts.topic;
      let bytes = 0;
      for (const { topic: to = this.opts.topic, ...m } of messages) {
        const size = recordBytes(m);
        if (chunk.length > 0 && (to !== topic || bytes + size > this.opts.chunkBytes)) {
          await tx.send({ topic, messages: chunk });
          chunk = [];
          bytes = 0;
        }
        topic = to;
        chunk.push(m);
        bytes += size;
      }
      if (chunk.length > 0) await tx.send({ topic, messages: chunk });
      await tx.commit();
    } catch (err) {
      if (tx?.isActive()) await tx.abort().catch(() => {});
      throw classifyKafkaError(err, `producing ${messages.length} event(s) to ${this.opts.topic}`);
    }
  }

  async disconnect(): Promise<void> {
    await this.producer?.disconnect().catch(() => {});
    this.producer = undefined;
  }
}

/**
 * The position of the last event of `nodeId` committed in its partition, or undefined when the
 * partition holds none. Reads with read_committed from the end backwards in growing windows.
 */
export async function readLastPosition(
  kafka: Kafka,
  admin: Admin,
  opts: { topic: string; partition: number; nodeId: string; timeoutMs: number; log: Logger },
): Promise<StreamPosition | undefined> {
  const offsets = await admin.fetchTopicOffsets(opts.topic);
  const p = offsets.find((o) => o.partition === opts.partition);
  if (p === undefined)
    throw new BrabantError('KAFKA_UNAVAILABLE', `topic ${opts.topic} has no partition ${opts.partition}`);
  const high = BigInt(p.high);
  const low = BigInt(p.low);
  let window = 512n;
  let end = high;
  while (end > low) {
    const start = end - window > low ? end - window : low;
    const others = offsets.map((o) => o.partition).filter((x) => x !== opts.partition);
    const found = await scan(kafka, { ...opts, start, end, others });
    if (found !== undefined) return found;
    end = start;
    window *= 4n;
  }
  return undefined;
}

async function scan(
  kafka: Kafka,
  opts: {
    topic: string;
    partition: number;
    others: number[];
    nodeId: string;
    timeoutMs: number;
    start: bigint;
    end: bigint;
    log: Logger;
  },
): Promise<StreamPosition | undefined> {
  const consumer = kafka.consumer({
    groupId: `${readbackGroupPrefix(opts.nodeId)}${randomBytes(4).toString('hex')}`,
    readUncommitted: false,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 200,
  });
  let last: StreamPosition | undefined;
  try {
    await consumer.connect();
    await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new BrabantError(
              'KAFKA_UNAVAILABLE',
              `reading back the last event of ${opts.nodeId} from ${opts.topic} took over ${opts.timeoutMs} ms`,
            ),
          ),
        opts.timeoutMs,
      );
      const reached = (offset: string) => {
        if (BigInt(offset) + 1n >= opts.end) {
          clearTimeout(timer);
          resolve();
        }
      };
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        if (e.payload.partition === opts.partition) reached(String(e.payload.lastOffset));
      });
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            if (batch.partition !== opts.partition) return;
            for (const m of batch.messages) {
              if (BigInt(m.offset) >= opts.end) break;
              if (m.key?.toString() !== opts.nodeId) continue;
              last = decodePosition(m.headers) ?? last;
            }
          },
        })
        .then(() => {
          // Only this node's partition matters; do not read the others at all.
          if (opts.others.length > 0) consumer.pause([{ topic: opts.topic, partitions: opts.others }]);
          consumer.seek({ topic: opts.topic, partition: opts.partition, offset: String(opts.start) });
        })
        .catch(reject);
    });
    await done;
  } finally {
    await consumer.disconnect().catch(() => {});
  }
  return last;
}
