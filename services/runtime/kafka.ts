/** kafkajs set-up shared by the services: logs through pino, and one error classifier. */
import type { Kafka as KafkaClient, KafkaConfig } from 'kafkajs';
import { BrabantError } from './errors.ts';
import { kafkajsPatched } from './kafkajs-patch.ts';
import type { Logger } from './log.ts';

// kafkajs is loaded here, after its patch, and only here: a static import would load it while
// modules are linked, before any module body (the patch's included) runs.
const kafkajs = (await import('kafkajs')).default;
const { Kafka, logLevel } = kafkajs;
export const { Partitioners } = kafkajs;

export function createKafka(
  opts: { brokers: string[]; clientId: string; log: Logger } & Partial<KafkaConfig>,
): KafkaClient {
  const { log, ...config } = opts;
  const kafkaLog = log.child({ component: 'kafkajs' });
  if (!kafkajsPatched)
    kafkaLog.warn(
      'kafkajs was loaded before its patch (runtime/kafkajs-patch.ts): large sends cost more CPU',
    );
  return new Kafka({
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 200, retries: 5, maxRetryTime: 5000 },
    ...config,
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }) => {
        const { message, ...rest } = entry;
        if (level <= logLevel.ERROR) kafkaLog.error(rest, message);
        else if (level === logLevel.WARN) kafkaLog.warn(rest, message);
        else kafkaLog.debug(rest, message);
      },
  });
}

/** kafkajs errors carry a broker error `type` somewhere in their cause chain. */
function brokerErrorTypes(err: unknown): string[] {
  const types: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const o = e as { type?: unknown; name?: unknown; cause?: unknown; originalError?: unknown };
    if (typeof o.type === 'string') types.push(o.type);
    if (typeof o.name === 'string') types.push(o.name);
    e = o.originalError ?? o.cause;
  }
  return types;
}

const FENCED_TYPES = [
  'INVALID_PRODUCER_EPOCH',
  'PRODUCER_FENCED',
  'INVALID_PRODUCER_ID_MAPPING',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
];
const TOO_LARGE_TYPES = ['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE'];

/** One decision per kafkajs error: fenced (stop), too large (stop), or unavailable (retry). */
export function classifyKafkaError(err: unknown, what: string): BrabantError {
  if (err instanceof BrabantError) return err;
  const types = brokerErrorTypes(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (types.some((t) => FENCED_TYPES.includes(t))) {
    return new BrabantError(
      'FENCED',
      `${what}: another instance with the same transactional id took over (${detail})`,
      { cause: err },
    );
  }
  if (types.some((t) => TOO_LARGE_TYPES.includes(t))) {
    return new BrabantError(
      'MESSAGE_TOO_LARGE',
      `${what}: the broker refused a batch as too large (${detail})`,
      { cause: err },
    );
  }
  return new BrabantError('KAFKA_UNAVAILABLE', `${what}: ${detail}`, { cause: err, retriable: true });
}
