import { defineConfig } from 'vitest/config';

// Two tiers (by place): pure, fast unit tests next to the code (services/**/*.test.ts), and
// integration tests under test/ against the real stack, started once per run by the global setup.
// The long end-to-end runs (`npm run test:long`, which CI runs after `npm test`): each proves a
// capability the files of `npm test` also touch in a shorter way (join, the secured stack, a Kafka
// cluster per region, kill -9 and restarts), and together they would take `npm test` past 15 min.
const LONG = [
  'test/faults-recovery.test.ts',
  'test/partition-link.test.ts',
  'test/join-secured-cluster.test.ts',
  'test/security-per-region.test.ts',
  'test/major-upgrade-rolling.test.ts',
];

export default defineConfig({
  test: {
    // Two cores: at most two test files at a time (integration files share one stack). Three
    // made the suite slower, not faster.
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['services/**/*.test.ts', 'infra/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: LONG,
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: 'long',
          include: LONG,
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
