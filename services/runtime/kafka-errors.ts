/**
 * What kafkajs errors and log lines mean in Brabant's terms (pure): one decision per error
 * (fenced: stop; too large: stop; anything else: Kafka unavailable, retry), and kafkajs's own
 * log lines turned into lines that carry Brabant's code, the brokers and the retry schedule,
 * at most one per broker and kind every few seconds instead of one per failed attempt.
 */
import { BrabantError } from './errors.ts';
import { tlsFailure } from './tls-errors.ts';

/**
 * kafkajs errors carry a broker error `type` somewhere in their cause chain, or in the `errors`
 * of an aggregate (one per topic of a CreateTopics, say).
 */
function brokerErrorTypes(err: unknown, depth = 0): string[] {
  const types: string[] = [];
  let e: unknown = err;
  for (; e !== undefined && e !== null && depth < 8; depth++) {
    const o = e as {
      type?: unknown;
      name?: unknown;
      cause?: unknown;
      originalError?: unknown;
      errors?: unknown;
    };
    if (typeof o.type === 'string') types.push(o.type);
    if (typeof o.name === 'string') types.push(o.name);
    if (Array.isArray(o.errors))
      for (const inner of o.errors) types.push(...brokerErrorTypes(inner, depth + 1));
    e = o.originalError ?? o.cause;
  }
  return types;
}

const FENCED_TYPES = ['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING'];
/** What Kafka's authorizer answers when no ACL allows the request. */
const DENIED_TYPES = [
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'DELEGATION_TOKEN_AUTHORIZATION_FAILED',
];
const AUTHENTICATION_TYPES = [
  'KafkaJSSASLAuthenticationError',
  'SASL_AUTHENTICATION_FAILED',
  'ILLEGAL_SASL_STATE',
];
const TOO_LARGE_TYPES = ['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE'];

/** Whether an error comes from kafkajs (its classes are all named KafkaJS…). */
export function isKafkaError(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name.startsWith('KafkaJS');
}

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
  const denied = types.find((t) => DENIED_TYPES.includes(t));
  if (denied !== undefined || /not authorized to access/i.test(detail)) {
    return new BrabantError(
      'PERMISSION_DENIED',
      `${what}: Kafka's ACLs deny it (${denied ?? 'authorization failed'}: ${detail}); this service's Kafka user may only use its own node's topics, transactional id and group (brabant node init grants them, docs/security.md)`,
      { cause: err },
    );
  }
  if (types.some((t) => AUTHENTICATION_TYPES.includes(t))) {
    return new BrabantError(
      'AUTHENTICATION_FAILED',
      `${what}: Kafka refused the credentials (${detail}); check BRABANT_KAFKA_USER and its password (BRABANT_KAFKA_PASSWORD_FILE), or create the user with brabant node init`,
      { cause: err },
    );
  }
  const tls = tlsFailure(err);
  if (tls !== undefined) return new BrabantError('TLS_FAILED', `${what}: ${tls}`, { cause: err });
  if (types.some((t) => TOO_LARGE_TYPES.includes(t))) {
    return new BrabantError(
      'MESSAGE_TOO_LARGE',
      `${what}: the broker refused a batch as too large (${detail})`,
      {
        cause: err,
      },
    );
  }
  return new BrabantError('KAFKA_UNAVAILABLE', `${what}: ${detail}`, { cause: err, retriable: true });
}

/** A kafkajs log entry as Brabant logs it. */
export interface KafkaLogLine {
  level: 'error' | 'warn' | 'debug';
  message: string;
  fields: Record<string, unknown>;
  /** Lines with the same key are logged at most once per throttle period. */
  throttleKey?: string;
}

/** What kafkajs says when a broker itself cannot be reached (not a coordinator still loading). */
const UNREACHABLE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|Connection (error|timeout)|Failed to connect|Closed connection/i;

/**
 * A kafkajs log entry (its level as pino's name, its message and fields) in Brabant's terms:
 * a broker that cannot be reached is KAFKA_UNAVAILABLE with the brokers and the retry schedule.
 */
export function kafkaLogLine(
  level: 'error' | 'warn' | 'debug',
  message: string,
  fields: Record<string, unknown>,
  ctx: { brokers: string[]; retry: string },
): KafkaLogLine {
  const text = `${message} ${typeof fields.error === 'string' ? fields.error : ''}`;
  if (level !== 'debug' && UNREACHABLE.test(text)) {
    const broker = typeof fields.broker === 'string' ? fields.broker : ctx.brokers.join(',');
    return {
      level: 'warn',
      message: `KAFKA_UNAVAILABLE: Kafka broker ${broker} cannot be reached (${String(fields.error ?? message)}); retrying ${ctx.retry}`,
      fields: { code: 'KAFKA_UNAVAILABLE', broker, brokers: ctx.brokers },
      throttleKey: `unavailable:${broker}`,
    };
  }
  const { stack: _stack, ...rest } = fields;
  return { level, message, fields: rest };
}
