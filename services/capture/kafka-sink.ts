/**
 * Capture's side of Kafka: the change topic, a transactional producer (one Kafka transaction per
 * batch; the transactional id fences a zombie capture of the same node). Where a node's events
 * are and the read-back of its last one: protocol/read-back.ts.
 */
import type { Kafka, Message, Producer } from 'kafkajs';
import { classifyKafkaError, Partitioners } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';

/** A record and the topic it goes to: the dead-letter topic, or (no topic) the change topic. */
export type OutMessage = Message & { topic?: string };

/** What the pipeline needs from Kafka; a fake in unit tests. */
export interface EventSink {
  /** Sends the messages in one Kafka transaction and commits it, or throws (nothing is then visible). */
  commitBatch(messages: OutMessage[]): Promise<void>;
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
