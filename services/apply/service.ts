/** The apply service: runs sessions, restarting after retriable errors with backoff (as capture does). */
import { type BackoffPolicy, backoffDelay } from '../capture/service.ts';
import { describeError, isBrabantError } from '../runtime/errors.ts';
import { type ApplySessionDeps, runApplySession } from './session.ts';

export async function runApply(deps: ApplySessionDeps & { backoff: BackoffPolicy }): Promise<void> {
  let stop = false;
  void deps.stopRequested.then(() => {
    stop = true;
  });
  let attempt = 0;
  for (;;) {
    const started = Date.now();
    try {
      await runApplySession(deps);
      return;
    } catch (err) {
      if (stop) return;
      if (!(isBrabantError(err) && err.retriable)) throw err;
      attempt = Date.now() - started > 60_000 ? 1 : attempt + 1;
      const wait = backoffDelay(attempt, deps.backoff);
      deps.metrics.restarts.inc();
      deps.log.warn(
        { error: describeError(err), attempt, retryInMs: wait },
        'apply session failed; retrying',
      );
      const slept = await Promise.race([
        new Promise((r) => setTimeout(() => r('slept'), wait)),
        deps.stopRequested.then(() => 'stop'),
      ]);
      if (slept === 'stop') return;
    }
  }
}
