/**
 * A stack of a test file's own with a Kafka cluster per region (the layout across datacenters):
 * per region a cluster and a node, the registry in the first region and a follower on a standby
 * of its database in the second, and the link between them (relays) that tests cut and heal.
 * Always local components: the external ones given to the test run are for the shared stack.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { linkControl } from '../../infra/link/control.ts';
import { type Stack, startStack, stopRecorded, withoutExternal } from '../../infra/stack.ts';

export async function perRegionStack(
  name: string,
): Promise<Stack & { link: ReturnType<typeof linkControl> }> {
  const workDir = resolve(`.cache/test-stack-${name}`);
  await stopRecorded(workDir);
  rmSync(workDir, { recursive: true, force: true });
  const started = Date.now();
  const stack = await startStack(
    {
      regions: [
        { name: 'vlaanderen', nodes: 1 },
        { name: 'wallonie', nodes: 1 },
      ],
      kafka: 'per-region',
    },
    {
      workDir,
      basePort: 0,
      env: withoutExternal(process.env),
    },
  );
  console.log(`[${name}] per-region stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (stack.linkUrl === undefined) throw new Error('the per-region stack has no link');
  return Object.assign(stack, { link: linkControl(stack.linkUrl) });
}
