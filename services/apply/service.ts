/** The apply service: runs sessions, restarting after retriable errors with backoff (as capture does). */
import { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { type BackoffPolicy, superviseSessions } from '../runtime/supervise.ts';
import { type ApplySessionDeps, runApplySession } from './session.ts';

export async function runApply(
  d: Omit<ApplySessionDeps, 'registry'> & { backoff: BackoffPolicy },
): Promise<void> {
  const deps = {
    ...d,
    registry: new SchemaRegistryClient({
      url: d.config.registryUrl,
      ...(d.security.registry === undefined ? {} : { tls: d.security.registry }),
    }),
  };
  await superviseSessions({
    name: 'apply',
    session: () => runApplySession(deps),
    stopRequested: deps.stopRequested,
    backoff: deps.backoff,
    log: deps.log,
    onRestart: () => deps.metrics.restarts.inc(),
  });
}
