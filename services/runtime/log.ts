/** pino JSON-lines logger; one per process, children per component. */
import { type Logger, pino } from 'pino';
import { redactText } from './redact.ts';

export type { Logger };

/**
 * `secrets`: values never written as they are (the service's passwords and keys); every line is
 * also cleared of passwords in URLs, whatever logged it (services/runtime/redact.ts).
 */
export function createLogger(
  service: string,
  level: string = process.env.BRABANT_LOG_LEVEL ?? 'info',
  secrets: readonly string[] = [],
): Logger {
  return pino({
    level,
    base: { service, pid: process.pid },
    hooks: { streamWrite: (line) => redactText(line, secrets) },
  });
}
