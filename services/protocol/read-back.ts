/**
 * Where a node's events are in a change topic, and reading them back: its partition (the default
 * partitioner on the node id, so one node's stream stays in order in one partition), the last
 * event of it committed there (what capture must not send again after a restart; what a restored
 * or rebuilt node lost), and a range of its events (read_committed, a consumer group of its own
 * that commits nothing).
 */
import { randomBytes } from 'node:crypto';
import type { Admin, Kafka, KafkaMessage } from 'kafkajs';
import { BrabantError } from '../runtime/errors.ts';
import { Partitioners } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';
import { decodePosition } from './headers.ts';
import type { StreamPosition } from './lsn.ts';
import { readbackGroupPrefix } from './names.ts';

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

export interface NodeEvents {
  topic: string;
  partition: number;
  nodeId: string;
  timeoutMs: number;
  log: Logger;
}

/** One event of the node read back: its position (headers), offset and the record. */
export interface ReadEvent {
  position: StreamPosition;
  offset: bigint;
  message: KafkaMessage;
}

/** The partition's first and next offsets (Kafka's low and high watermarks). */
export async function partitionBounds(
  admin: Admin,
  topic: string,
  partition: number,
): Promise<{ low: bigint; high: bigint }> {
  const offsets = await admin.fetchTopicOffsets(topic);
  const p = offsets.find((o) => o.partition === partition);
  if (p === undefined)
    throw new BrabantError('KAFKA_UNAVAILABLE', `topic ${topic} has no partition ${partition}`);
  return { low: BigInt(p.low), high: BigInt(p.high) };
}

/**
 * The last event of `nodeId` committed in its partition, or undefined when the partition holds
 * none. Reads with read_committed from the end backwards in growing windows.
 */
export async function readLastEvent(
  kafka: Kafka,
  admin: Admin,
  opts: NodeEvents,
): Promise<ReadEvent | undefined> {
  const { low, high } = await partitionBounds(admin, opts.topic, opts.partition);
  let window = 512n;
  let end = high;
  while (end > low) {
    let start = end - window;
    if (start < low) start = low;
    let last: ReadEvent | undefined;
    await readEvents(kafka, admin, { ...opts, start, end }, (e) => {
      last = e;
    });
    if (last !== undefined) return last;
    end = start;
    window *= 4n;
  }
  return undefined;
}

/** The position of the last event of `nodeId` committed in its partition (see readLastEvent). */
export async function readLastPosition(
  kafka: Kafka,
  admin: Admin,
  opts: NodeEvents,
): Promise<StreamPosition | undefined> {
  return (await readLastEvent(kafka, admin, opts))?.position;
}

/** Hands every committed event of `nodeId` at offsets [start, end) of its partition to `each`, in order. */
export async function readEvents(
  kafka: Kafka,
  admin: Admin,
  opts: NodeEvents & { start: bigint; end: bigint },
  each: (e: ReadEvent) => void | Promise<void>,
): Promise<void> {
  if (opts.end <= opts.start) return;
  const others = (await admin.fetchTopicOffsets(opts.topic))
    .map((o) => o.partition)
    .filter((x) => x !== opts.partition);
  const consumer = kafka.consumer({
    groupId: `${readbackGroupPrefix(opts.nodeId)}${randomBytes(4).toString('hex')}`,
    readUncommitted: false,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 200,
  });
  try {
    await consumer.connect();
    await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new BrabantError(
              'KAFKA_UNAVAILABLE',
              `reading back events of ${opts.nodeId} from ${opts.topic} took over ${opts.timeoutMs} ms`,
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
            try {
              for (const m of batch.messages) {
                const offset = BigInt(m.offset);
                if (offset >= opts.end) break;
                if (offset < opts.start || m.key?.toString() !== opts.nodeId) continue;
                const position = decodePosition(m.headers);
                if (position !== undefined) await each({ position, offset, message: m });
              }
            } catch (err) {
              clearTimeout(timer);
              reject(err);
            }
          },
        })
        .then(() => {
          // Only this node's partition matters; do not read the others at all.
          if (others.length > 0) consumer.pause([{ topic: opts.topic, partitions: others }]);
          consumer.seek({ topic: opts.topic, partition: opts.partition, offset: String(opts.start) });
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect().catch(() => {});
  }
}
