/**
 * The capture service: runs sessions, restarting after retriable errors (Kafka, registry or the
 * node unreachable) with exponential backoff; stops for good on errors that need a person (bad
 * configuration, missing replica identity, lost slot, fenced by a newer capture, oversized row).
 */
import { describeError, isBrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { runSession, type SessionDeps } from './session.ts';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/** Delay before retry n (1-based): doubling from initialMs, capped, with ±20 % jitter. */
export function backoffDelay(attempt: number, p: BackoffPolicy, random = Math.random): number {
  const base = Math.min(p.maxMs, p.initialMs * 2 ** (attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export async function runCapture(
  deps: Omit<SessionDeps, 'stopRequested'> & { stopRequested: Promise<void>; backoff?: BackoffPolicy },
): Promise<void> {
  const log: Logger = deps.log;
  const policy = deps.backoff ?? { initialMs: 500, maxMs: 30_000 };
  let stop = false;
  void deps.stopRequested.then(() => {
    stop = true;
  });
  let attempt = 0;
  for (;;) {
    const started = Date.now();
    try {
      await runSession(deps);
      return;
    } catch (err) {
      if (stop) return;
      const retriable = isBrabantError(err) ? err.retriable : false;
      if (!retriable) throw err;
      // A session that ran a while resets the backoff.
      attempt = Date.now() - started > 60_000 ? 1 : attempt + 1;
      const wait = backoffDelay(attempt, policy);
      deps.metrics.restarts.inc();
      log.warn({ error: describeError(err), attempt, retryInMs: wait }, 'capture session failed; retrying');
      const slept = await Promise.race([
        new Promise((r) => setTimeout(() => r('slept'), wait)),
        deps.stopRequested.then(() => 'stop'),
      ]);
      if (slept === 'stop') return;
    }
  }
}
