/**
 * Reads the dead-letter topic of one region's Kafka cluster to its end (I/O): a consumer of a
 * throw-away group (deleted afterwards), read_committed like apply, stopping once every partition
 * is read up to the high watermark it had when reading began (a transaction's commit marker
 * takes an offset too, so "up to" allows it), or when nothing more came for a while.
 */
import { randomUUID } from 'node:crypto';
import type { KafkaConfig } from 'kafkajs';
import { DEAD_LETTER_TOPIC } from '../protocol/topics.ts';
import { createKafka } from '../runtime/kafka.ts';
import { createLogger } from '../runtime/log.ts';
import type { RawRecord } from './deadletter-model.ts';

const quiet = createLogger('brabant', 'silent');

export async function readDeadLetterRecords(
  region: { name: string; kafka: string[] },
  /** How to log in (commandKafkaAuth): nothing on a plaintext topology. */
  auth: Pick<KafkaConfig, 'ssl' | 'sasl'> = {},
  timeoutMs = 15_000,
): Promise<RawRecord[]> {
  const kafka = createKafka({
    brokers: region.kafka,
    ...auth,
    clientId: 'brabant-deadletters',
    log: quiet,
    connectionTimeout: 2000,
    requestTimeout: 5000,
    retry: { retries: 1 },
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(DEAD_LETTER_TOPIC)) return [];
    const offsets = await admin.fetchTopicOffsets(DEAD_LETTER_TOPIC);
    const high = new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
    const pending = new Set(offsets.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => o.partition));
    if (pending.size === 0) return [];
    const groupId = `brabant-deadletters-${randomUUID()}`;
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100 });
    const out: RawRecord[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [DEAD_LETTER_TOPIC], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        let lastBatch = 0;
        const deadline = setTimeout(() => resolve(), timeoutMs);
        const idle = setInterval(() => {
          if (lastBatch > 0 && Date.now() - lastBatch > 1500) resolve();
        }, 250);
        const done = () => {
          clearTimeout(deadline);
          clearInterval(idle);
          resolve();
        };
        consumer
          .run({
            eachBatch: async ({ batch }) => {
              lastBatch = Date.now();
              for (const m of batch.messages) {
                out.push({
                  region: region.name,
                  partition: batch.partition,
                  offset: m.offset,
                  timestamp: m.timestamp,
                  key: m.key?.toString() ?? null,
                  headers: Object.fromEntries(
                    Object.entries(m.headers ?? {}).map(([k, v]) => [
                      k,
                      (Array.isArray(v) ? v[v.length - 1] : v)?.toString() ?? '',
                    ]),
                  ),
                  value: m.value,
                });
              }
              // (a commit marker after the last record takes an offset no batch shows: the idle timer ends that case)
              if (BigInt(batch.lastOffset()) + 1n >= (high.get(batch.partition) ?? 0n))
                pending.delete(batch.partition);
              if (pending.size === 0) done();
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect().catch(() => {});
      await admin.deleteGroups([groupId]).catch(() => {});
    }
    return out.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
