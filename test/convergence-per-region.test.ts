/**
 * The convergence proof of test/convergence.test.ts (conflicts, deletes, kill -9, one apply away)
 * on a Kafka cluster per region: each capture produces into its own region's cluster, each apply
 * reads the other region's stream from that cluster across the link (direct peer streams), and
 * the second region's capture registers its schemas in the first region's registry through the
 * link while its apply reads ids from its own follower registry.
 */
import { afterAll, beforeAll } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import { convergenceSuite } from './support/convergence.ts';
import { replicationPair } from './support/pair.ts';
import { perRegionStack } from './support/regions.ts';

let stack: Stack | undefined;
beforeAll(async () => {
  stack = await perRegionStack('convergence');
});
afterAll(async () => {
  await stack?.stop();
});

convergenceSuite('convergence on a Kafka cluster per region (last writer wins)', (schema) =>
  replicationPair(schema, stack!),
);
