/**
 * Starts the real stack once per test run (two regions, one node each, one shared Kafka, the
 * schema registry) and hands its connection details to the tests through `inject('stack')`.
 * Components given by environment variables (BRABANT_KAFKA_BROKERS, BRABANT_PG_URLS,
 * BRABANT_REGISTRY_URL) are used instead of started.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { externalConfig, type StackInfo, startStack, stopRecorded } from '../infra/stack.ts';
import { loadConfig } from '../services/runtime/config.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}

export const TEST_TOPOLOGY = {
  regions: [
    { name: 'vlaanderen', nodes: 1 },
    { name: 'wallonie', nodes: 1 },
  ],
  kafka: 'shared',
} as const;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const workDir = resolve('.cache/test-stack');
  // A run killed before its teardown leaves processes and data: clear them first.
  const leftovers = await stopRecorded(workDir);
  if (leftovers > 0) console.log(`[stack] stopped ${leftovers} process(es) left by an earlier test run`);
  rmSync(workDir, { recursive: true, force: true });
  const started = Date.now();
  const stack = await startStack(
    { regions: TEST_TOPOLOGY.regions.map((r) => ({ ...r })), kafka: TEST_TOPOLOGY.kafka },
    { workDir, basePort: 0, onProgress: (m) => console.log(`[stack] ${m}`) },
  );
  console.log(`[stack] ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const { regions, registryUrl, pids } = stack;
  project.provide('stack', { regions, registryUrl, workDir, pids });
  const keep = loadConfig(externalConfig).keep;
  return async () => {
    if (keep) {
      stack.release();
      console.log(
        `[stack] left running (BRABANT_KEEP_STACK); stop it with BRABANT_HOME=${workDir} brabant down`,
      );
      return;
    }
    await stack.stop();
  };
}
