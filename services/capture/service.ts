/**
 * The capture service: runs sessions, restarting after retriable errors (Kafka, registry or the
 * node unreachable); stops for good on errors that need a person (bad configuration, missing
 * replica identity, lost slot, fenced by a newer capture, oversized row).
 */
import { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { type BackoffPolicy, superviseSessions } from '../runtime/supervise.ts';
import { runSession, type SessionDeps } from './session.ts';

export async function runCapture(
  d: Omit<SessionDeps, 'registry'> & { backoff?: BackoffPolicy },
): Promise<void> {
  const deps = {
    ...d,
    registry: new SchemaRegistryClient({
      url: d.config.registryUrl,
      primaryUrl: d.config.registryPrimaryUrl,
      ...(d.security.registry === undefined ? {} : { tls: d.security.registry }),
    }),
  };
  await superviseSessions({
    name: 'capture',
    session: async () => {
      // 'restart': the session reached the inserts publication's creation; from there on, both
      if ((await runSession(deps)) === 'restart') {
        deps.log.info('capture session starting again with both publications');
        await runSession(deps, { passedInsertsCreation: true });
      }
    },
    stopRequested: deps.stopRequested,
    backoff: deps.backoff ?? { initialMs: 500, maxMs: 30_000 },
    log: deps.log,
    onRestart: () => deps.metrics.restarts.inc(),
  });
}
