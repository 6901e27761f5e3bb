/**
 * Runs a service's sessions, restarting after the errors the error policy retries (Kafka, the
 * registry or the node unreachable) with exponential backoff, and stopping for good on errors
 * that need a person, with the policy's message. Shared by capture and apply.
 */
import { directiveFor } from './error-policy.ts';
import { describeError } from './errors.ts';
import type { Logger } from './log.ts';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/** Delay before retry n (1-based): doubling from initialMs, capped, with ±20 % jitter. */
export function backoffDelay(attempt: number, p: BackoffPolicy, random = Math.random): number {
  const base = Math.min(p.maxMs, p.initialMs * 2 ** (attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export async function superviseSessions(opts: {
  name: string;
  session: () => Promise<void>;
  stopRequested: Promise<void>;
  backoff: BackoffPolicy;
  log: Logger;
  onRestart: () => void;
}): Promise<void> {
  let stop = false;
  void opts.stopRequested.then(() => {
    stop = true;
  });
  let attempt = 0;
  for (;;) {
    const started = Date.now();
    try {
      await opts.session();
      return;
    } catch (err) {
      if (stop) return;
      const d = directiveFor(err, { doing: `running the ${opts.name} session` });
      if (d.kind !== 'retry') throw d.kind === 'stop' ? d.error : err;
      // A session that ran a while resets the backoff.
      attempt = Date.now() - started > 60_000 ? 1 : attempt + 1;
      const wait = backoffDelay(attempt, opts.backoff);
      opts.onRestart();
      opts.log.warn(
        { code: d.error.code, error: describeError(d.error), attempt, retryInMs: wait },
        `${opts.name} session failed; retrying`,
      );
      const slept = await Promise.race([
        new Promise((r) => setTimeout(() => r('slept'), wait)),
        opts.stopRequested.then(() => 'stop'),
      ]);
      if (slept === 'stop') return;
    }
  }
}
