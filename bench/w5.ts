/** W5 (capture alone, against Debezium): not implemented yet. */
import type { Scenario } from './scenarios.ts';

export const W5: Scenario = {
  id: 'W5',
  title: 'capture alone',
  systems: ['brabant', 'debezium'],
  rows: [],
  notImplemented: 'n/a (not implemented yet)',
  async run() {
    throw new Error('W5 is not implemented');
  },
};
