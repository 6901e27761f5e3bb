import { defineConfig } from 'vitest/config';

// Two tiers (by place): pure, fast unit tests next to the code (services/**/*.test.ts), and
// integration tests under test/ against the real stack, started once per run by the global setup.
export default defineConfig({
  test: {
    // Three test files at a time on two cores: integration files spend most of their time waiting
    // (for convergence, for a restarted process, for a cut link), and with two the suite took
    // ~18 min; they share one stack, each with its own databases, slots and topics.
    maxWorkers: 3,
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
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
