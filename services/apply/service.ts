/** The apply service: runs sessions, restarting after retriable errors with backoff (as capture does). */
import { type BackoffPolicy, superviseSessions } from '../runtime/supervise.ts';
import { type ApplySessionDeps, runApplySession } from './session.ts';

export async function runApply(deps: ApplySessionDeps & { backoff: BackoffPolicy }): Promise<void> {
  await superviseSessions({
    name: 'apply',
    session: () => runApplySession(deps),
    stopRequested: deps.stopRequested,
    backoff: deps.backoff,
    log: deps.log,
    onRestart: () => deps.metrics.restarts.inc(),
  });
}
