import { defineConfig } from 'vitest/config';

// Two tiers (by place): pure, fast unit tests next to the code (services/**/*.test.ts), and
// integration tests under test/ against the real stack, started once per run by the global setup.
export default defineConfig({
  test: {
    // Two cores: at most two test files at a time (integration files share one stack).
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
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
