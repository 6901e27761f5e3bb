/** kafkajs set-up shared by the services: logs through pino, and one error classifier. */
import type { Kafka as KafkaClient, KafkaConfig } from 'kafkajs';
import { kafkaLogLine } from './kafka-errors.ts';
import { kafkajsPatched } from './kafkajs-patch.ts';
import type { Logger } from './log.ts';

// kafkajs is loaded here, after its patch, and only here: a static import would load it while
// modules are linked, before any module body (the patch's included) runs.
const kafkajs = (await import('kafkajs')).default;
const { Kafka, logLevel } = kafkajs;
export const {
  Partitioners,
  ConfigResourceTypes,
  AclResourceTypes,
  AclOperationTypes,
  AclPermissionTypes,
  ResourcePatternTypes,
} = kafkajs;

export function createKafka(
  opts: { brokers: string[]; clientId: string; log: Logger } & Partial<KafkaConfig>,
): KafkaClient {
  const { log, ...config } = opts;
  const kafkaLog = log.child({ component: 'kafkajs' });
  if (!kafkajsPatched)
    kafkaLog.warn(
      'kafkajs was loaded before its patch (runtime/kafkajs-patch.ts): large sends cost more CPU',
    );
  const retry = { initialRetryTime: 200, retries: 5, maxRetryTime: 5000, ...config.retry };
  const schedule = `every ${retry.initialRetryTime} ms doubling to ${retry.maxRetryTime} ms, ${retry.retries} times, then the session starts again with its own backoff`;
  // kafkajs logs every failed attempt; a broker that is down would fill the log
  const lastLogged = new Map<string, { at: number; suppressed: number }>();
  return new Kafka({
    connectionTimeout: 3000,
    requestTimeout: 30000,
    ...config,
    retry,
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }) => {
        const { message, ...rest } = entry;
        const name = level <= logLevel.ERROR ? 'error' : level === logLevel.WARN ? 'warn' : 'debug';
        const line = kafkaLogLine(name, message, rest, {
          brokers: config.brokers as string[],
          retry: schedule,
        });
        if (line.throttleKey !== undefined) {
          const now = Date.now();
          const last = lastLogged.get(line.throttleKey);
          if (last !== undefined && now - last.at < KAFKA_LOG_THROTTLE_MS) {
            last.suppressed++;
            return;
          }
          lastLogged.set(line.throttleKey, { at: now, suppressed: 0 });
          if (last !== undefined && last.suppressed > 0) line.fields.suppressedSinceLast = last.suppressed;
        }
        kafkaLog[line.level](line.fields, line.message);
      },
  });
}

/** The least time between two log lines about the same unreachable broker. */
const KAFKA_LOG_THROTTLE_MS = 10_000;

export { classifyKafkaError } from './kafka-errors.ts';
