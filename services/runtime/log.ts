/** pino JSON-lines logger; one per process, children per component. */
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(
  service: string,
  level: string = process.env.BRABANT_LOG_LEVEL ?? 'info',
): Logger {
  return pino({ level, base: { service, pid: process.pid } });
}
