/** Runs the services as real child processes (so tests can kill -9 it) on a test's own names. */
import { join, resolve } from 'node:path';
import type { NodeInfo, StackInfo } from '../../infra/stack.ts';
import { type LaunchedService, launch } from '../../services/control/launcher.ts';
import { regionOf, stack, uniqueName } from './stack.ts';

/** A running service process (started through the launcher every user of Brabant's services shares). */
export type ServiceProcess = LaunchedService;

export interface CaptureNames {
  nodeId: string;
  region: string;
  topic: string;
  slot: string;
  publication: string;
  dbUrl: string;
}

/** Fresh names for one test: its own node id (transactional id), topic, slot and publication. */
export function captureNames(node: NodeInfo, dbUrl: string): CaptureNames {
  const id = uniqueName(node.id.replace('-', ''));
  return {
    nodeId: id,
    region: node.region,
    topic: `brabant.${uniqueName('changes')}`,
    slot: `slot_${id}`,
    publication: `pub_${id}`,
    dbUrl,
  };
}

/** Capture of a test's node, on the test stack (or `on`: a stack of the test's own, e.g. per-region). */
export function startCapture(
  names: CaptureNames,
  env: Record<string, string> = {},
  root?: string,
  on: StackInfo = stack(),
): ServiceProcess {
  const r = regionOf(on, names.region);
  return launch(
    'capture',
    names.nodeId,
    {
      nodeId: names.nodeId,
      region: names.region,
      pgUrl: names.dbUrl,
      kafkaBrokers: r.kafkaBrokers,
      registryUrl: r.registryUrl ?? on.registryUrl,
      ...(r.registryPrimaryUrl && r.registryPrimaryUrl !== r.registryUrl
        ? { registryPrimaryUrl: r.registryPrimaryUrl }
        : {}),
      topic: names.topic,
      slot: names.slot,
      publication: names.publication,
      heartbeatMs: 0,
      metricsPort: 0,
    },
    { logFile: logFile('capture', names.nodeId), env, ...(root === undefined ? {} : { root }) },
  );
}

/**
 * Starts `services/<kind>/main.ts` as a child process with the given environment; `root` is the
 * checkout to run it from (another build of Brabant, for upgrade tests), this one by default.
 */
export function startService(
  kind: 'capture' | 'apply',
  name: string,
  env: Record<string, string>,
  root?: string,
): ServiceProcess {
  return launch(
    kind,
    name,
    { metricsPort: 0 },
    {
      logFile: logFile(kind, name),
      env,
      ...(root === undefined ? {} : { root: resolve(root) }),
    },
  );
}

function logFile(kind: string, name: string): string {
  return join(resolve('.cache/test-logs'), `${kind}-${name}-${Date.now()}.log`);
}
