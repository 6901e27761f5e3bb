/**
 * Kafka topics of the wire contract: their names and how they are created (the first service to
 * need a topic creates it; creating one that exists is fine).
 */
import type { Admin } from 'kafkajs';
import type { Logger } from '../runtime/log.ts';

export function changeTopic(region: string): string {
  return `brabant.${region}.changes`;
}

export const CONFLICTS_TOPIC = 'brabant.conflicts';
export const DEAD_LETTER_TOPIC = 'brabant.deadletter';

export interface TopicSettings {
  topic: string;
  partitions: number;
  /** Broker-side limit of one message (topic max.message.bytes). */
  maxMessageBytes: number;
  retentionMs: number;
}

/** Creates the topic if missing; returns its partition count. */
export async function ensureTopic(admin: Admin, s: TopicSettings, log: Logger): Promise<number> {
  const existing = await admin
    .fetchTopicMetadata({ topics: [] })
    .then((m) => m.topics.find((t) => t.name === s.topic));
  if (existing !== undefined) return existing.partitions.length;
  const created = await admin
    .createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic: s.topic,
          numPartitions: s.partitions,
          replicationFactor: -1,
          configEntries: [
            { name: 'max.message.bytes', value: String(s.maxMessageBytes) },
            { name: 'retention.ms', value: String(s.retentionMs) },
            { name: 'cleanup.policy', value: 'delete' },
          ],
        },
      ],
    })
    .catch((err: { type?: string }) => {
      // another service created it meanwhile
      if (err?.type === 'TOPIC_ALREADY_EXISTS') return false;
      throw err;
    });
  if (created) log.info({ topic: s.topic, partitions: s.partitions }, 'created change topic');
  const meta = await admin.fetchTopicMetadata({ topics: [s.topic] });
  return meta.topics[0]!.partitions.length;
}
