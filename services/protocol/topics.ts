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

const DAY_MS = 24 * 3600 * 1000;

/**
 * A change topic as the first service to need it creates it (capture's options can override
 * each field): partitions spread the nodes of a region (a node's stream stays in one), retention
 * is how long a region may stay away and still catch up from Kafka.
 */
export const CHANGE_TOPIC_DEFAULTS: Omit<TopicSettings, 'topic'> = {
  partitions: 6,
  maxMessageBytes: 1024 * 1024,
  retentionMs: 7 * DAY_MS,
};

/** The conflict log and the dead-letter topic: kept a month, for people to inspect and repair. */
export const SIDE_TOPIC_DEFAULTS: Omit<TopicSettings, 'topic'> = {
  partitions: 3,
  maxMessageBytes: 8 * 1024 * 1024,
  retentionMs: 30 * DAY_MS,
};

export function changeTopicSettings(
  topic: string,
  overrides: Partial<Omit<TopicSettings, 'topic'>> = {},
): TopicSettings {
  return { topic, ...CHANGE_TOPIC_DEFAULTS, ...overrides };
}

export function sideTopicSettings(): TopicSettings[] {
  return [CONFLICTS_TOPIC, DEAD_LETTER_TOPIC].map((topic) => ({ topic, ...SIDE_TOPIC_DEFAULTS }));
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
