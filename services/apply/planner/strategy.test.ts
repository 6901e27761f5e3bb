import { describe, expect, it } from 'vitest';
import {
  fastGroupLimit,
  initialStrategyState,
  MAX_FAST_BACKOFF,
  nextStrategy,
  pipelineNextGroup,
  type Strategy,
  type StrategyEvent,
  type StrategyState,
} from './strategy.ts';

const G = 500;
const start = initialStrategyState();
const s = (
  aheadBudget: number,
  fastLimit: number,
  fastBackoff: number,
  fullBudget = 0,
  aheadBackoff = 0,
): StrategyState => ({
  aheadBudget,
  fastLimit,
  fastBackoff,
  fullBudget,
  aheadBackoff,
});

describe('the choice of strategy', () => {
  // [what, state before, event, in a transaction, grouping, strategy, state after]
  const cases: [string, StrategyState, StrategyEvent, boolean, number, Strategy, StrategyState][] = [
    ['starts with the fast path', start, { kind: 'next' }, false, G, 'fast', start],
    ['takes the full path with grouping off', start, { kind: 'next' }, false, 1, 'full', start],
    ['continues an open large transaction on the full path', start, { kind: 'next' }, true, G, 'full', start],
    [
      'resolves ahead while a budget is left',
      s(4, 8, 4),
      { kind: 'next' },
      false,
      G,
      'resolve-ahead',
      s(4, 8, 4),
    ],
    [
      'resolves ahead what the fast planner could not take',
      start,
      { kind: 'fast-none' },
      false,
      G,
      'resolve-ahead',
      start,
    ],
    [
      'keeps the fast path while groups go through whole, doubling its limit back',
      s(0, 8, 0),
      { kind: 'fast-ran', planned: 8, committed: 8 },
      false,
      G,
      'fast',
      s(0, 16, 0),
    ],
    [
      'never lets the limit pass the group size',
      s(0, 400, 0),
      { kind: 'fast-ran', planned: 400, committed: 400 },
      false,
      G,
      'fast',
      s(0, G, 0),
    ],
    [
      'after a miss mid-group: the missed one is resolved ahead, the next group holds as many as went through',
      s(0, G, 0),
      { kind: 'fast-ran', planned: 100, committed: 30 },
      false,
      G,
      'resolve-ahead',
      s(0, 30, 0),
    ],
    [
      'a miss on the first transaction sets a budget of one to resolve ahead',
      s(0, G, 0),
      { kind: 'fast-ran', planned: 100, committed: 0 },
      false,
      G,
      'resolve-ahead',
      s(1, 1, 1),
    ],
    [
      'repeated misses on the first transaction double the budget',
      s(0, 1, 8),
      { kind: 'fast-ran', planned: 1, committed: 0 },
      false,
      G,
      'resolve-ahead',
      s(16, 1, 16),
    ],
    [
      'the budget stops doubling at its cap',
      s(0, 1, MAX_FAST_BACKOFF),
      { kind: 'fast-ran', planned: 1, committed: 0 },
      false,
      G,
      'resolve-ahead',
      s(MAX_FAST_BACKOFF, 1, MAX_FAST_BACKOFF),
    ],
    [
      'takes the full path where resolve ahead could take nothing',
      s(3, 1, 4),
      { kind: 'ahead-none' },
      false,
      G,
      'full',
      s(3, 1, 4),
    ],
    [
      'spends the budget, and goes back to the fast path once it is spent',
      s(4, 1, 4),
      { kind: 'ahead-ran', planned: 6, committed: 6 },
      false,
      G,
      'fast',
      s(0, 1, 4),
    ],
    [
      'keeps resolving ahead while the budget lasts',
      s(20, 1, 32),
      { kind: 'ahead-ran', planned: 6, committed: 6 },
      false,
      G,
      'resolve-ahead',
      s(14, 1, 32),
    ],
    [
      'a transaction whose rows changed after the lookup takes the full path',
      s(20, 1, 32),
      { kind: 'ahead-ran', planned: 6, committed: 2 },
      false,
      G,
      'full',
      s(14, 1, 32),
    ],
    [
      'a resolve-ahead group that took nothing sets a budget of one for the full path',
      s(20, 1, 32),
      { kind: 'ahead-ran', planned: 2, committed: 0 },
      false,
      G,
      'full',
      s(18, 1, 32, 1, 1),
    ],
    [
      'repeated resolve-ahead misses on the first transaction double the full budget, up to its cap',
      s(20, 1, 32, 0, MAX_FAST_BACKOFF),
      { kind: 'ahead-ran', planned: 1, committed: 0 },
      false,
      G,
      'full',
      s(19, 1, 32, MAX_FAST_BACKOFF, MAX_FAST_BACKOFF),
    ],
    [
      'spends the full budget first',
      s(18, 1, 32, 3, 4),
      { kind: 'next' },
      false,
      G,
      'full',
      s(18, 1, 32, 2, 4),
    ],
    [
      'resolves ahead again once the full budget is spent (a probe)',
      s(18, 1, 32, 0, 4),
      { kind: 'next' },
      false,
      G,
      'resolve-ahead',
      s(18, 1, 32, 0, 4),
    ],
    [
      'a resolve-ahead group that took some resets the full backoff',
      s(20, 1, 32, 0, 8),
      { kind: 'ahead-ran', planned: 6, committed: 2 },
      false,
      G,
      'full',
      s(14, 1, 32, 0, 0),
    ],
    [
      'an open large transaction does not spend the full budget',
      s(0, 1, 0, 5, 8),
      { kind: 'next' },
      true,
      G,
      'full',
      s(0, 1, 0, 5, 8),
    ],
  ];

  it.each(cases)('%s', (_what, before, event, inTransaction, groupTransactions, strategy, after) => {
    expect(nextStrategy(before, event, { groupTransactions, inTransaction })).toEqual({
      strategy,
      state: after,
    });
  });

  it('pipelines the next resolve-ahead group only while the budget reaches past this one', () => {
    expect(pipelineNextGroup(s(10, 1, 8), 6)).toBe(true);
    expect(pipelineNextGroup(s(6, 1, 8), 6)).toBe(false);
    expect(pipelineNextGroup(s(0, 1, 0), 1)).toBe(false);
  });

  it('limits a fast group by the smaller of the group size and the adaptive limit', () => {
    expect(fastGroupLimit(start, { groupTransactions: G })).toBe(G);
    expect(fastGroupLimit(s(0, 3, 0), { groupTransactions: G })).toBe(3);
  });
});
