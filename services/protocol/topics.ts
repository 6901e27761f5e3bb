/**
 * Kafka topics of the wire contract: their names and how they are created (the first service to
 * need a topic creates it; creating one that exists is fine).
 */
import type { Admin } from 'kafkajs';
import { BrabantError } from '../runtime/errors.ts';
import { ConfigResourceTypes } from '../runtime/kafka.ts';
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

/** A setting of an existing topic that is not what the contract declares. */
export interface TopicProblem {
  setting: string;
  declared: string;
  actual: string;
  /** `stop`: using the topic would lose change events; `warn`: it works, with less margin. */
  severity: 'stop' | 'warn';
  why: string;
}

/**
 * How an existing topic's settings differ from the declared ones (pure). A compacted topic keeps
 * only the last event per key, and a node's events all carry its node id as key: that would
 * delete committed changes, so it stops. Shorter retention (a region may stay away less long than
 * declared) and a smaller message limit (capture stops on a larger event) are warnings; more
 * partitions than declared are fine (a node's stream stays in one of them).
 */
export function topicProblems(
  s: TopicSettings,
  actual: { partitions: number; configs: Record<string, string> },
): TopicProblem[] {
  const out: TopicProblem[] = [];
  const policy = actual.configs['cleanup.policy'];
  if (policy?.split(',').includes('compact'))
    out.push({
      setting: 'cleanup.policy',
      declared: 'delete',
      actual: policy,
      severity: 'stop',
      why: 'compaction keeps only the last event of each key, and a node’s events share its node id as key: committed changes would be deleted',
    });
  const retention = Number(actual.configs['retention.ms']);
  if (Number.isFinite(retention) && retention >= 0 && retention < s.retentionMs)
    out.push({
      setting: 'retention.ms',
      declared: String(s.retentionMs),
      actual: String(retention),
      severity: 'warn',
      why: `a region away longer than ${(retention / 3_600_000).toFixed(1)} h can no longer catch up from Kafka`,
    });
  const maxBytes = Number(actual.configs['max.message.bytes']);
  if (Number.isFinite(maxBytes) && maxBytes < s.maxMessageBytes)
    out.push({
      setting: 'max.message.bytes',
      declared: String(s.maxMessageBytes),
      actual: String(maxBytes),
      severity: 'warn',
      why: 'capture stops with MESSAGE_TOO_LARGE on an event between the two',
    });
  if (actual.partitions < 1)
    out.push({
      setting: 'partitions',
      declared: String(s.partitions),
      actual: String(actual.partitions),
      severity: 'stop',
      why: 'the topic has no partition',
    });
  return out;
}

/** The fix for a problem, as the command an operator runs. */
function fixFor(topic: string, p: TopicProblem): string {
  return `kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name ${topic} --add-config ${p.setting}=${p.declared}`;
}

/** Checks an existing topic against its declared settings: stops on what would lose events, warns on the rest. */
async function checkTopic(admin: Admin, s: TopicSettings, partitions: number, log: Logger): Promise<void> {
  const described = await admin.describeConfigs({
    resources: [
      {
        type: ConfigResourceTypes.TOPIC,
        name: s.topic,
        configNames: ['cleanup.policy', 'retention.ms', 'max.message.bytes'],
      },
    ],
    includeSynonyms: false,
  });
  const configs: Record<string, string> = {};
  for (const e of described.resources[0]?.configEntries ?? []) configs[e.configName] = e.configValue;
  const problems = topicProblems(s, { partitions, configs });
  for (const p of problems.filter((x) => x.severity === 'warn'))
    log.warn(
      {
        code: 'TOPIC_SETTINGS_DIFFER',
        topic: s.topic,
        setting: p.setting,
        declared: p.declared,
        actual: p.actual,
      },
      `topic ${s.topic} has ${p.setting}=${p.actual}, declared ${p.declared}: ${p.why}; fix: ${fixFor(s.topic, p)}`,
    );
  const fatal = problems.filter((x) => x.severity === 'stop');
  if (fatal.length > 0)
    throw new BrabantError(
      'CONFIG_INVALID',
      `topic ${s.topic} cannot carry change events as it is: ${fatal.map((p) => `${p.setting}=${p.actual} (declared ${p.declared}): ${p.why}; fix: ${fixFor(s.topic, p)}`).join('; ')}`,
    );
}

/**
 * Creates the topic if missing, or checks an existing one against the declared settings (a
 * cluster set up by hand, or by other tooling); returns its partition count.
 */
export async function ensureTopic(admin: Admin, s: TopicSettings, log: Logger): Promise<number> {
  const existing = await admin
    .fetchTopicMetadata({ topics: [] })
    .then((m) => m.topics.find((t) => t.name === s.topic));
  if (existing !== undefined) {
    await checkTopic(admin, s, existing.partitions.length, log);
    return existing.partitions.length;
  }
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
