/**
 * Which strategy plans the next source transactions (pure). The three are one algorithm — plan a
 * local transaction per source transaction, each resting on what is known of the target's rows —
 * with different amounts of prior knowledge:
 *
 * - fast:          none; it assumes every row needs no conflict resolution and checks that
 *                  assumption as it writes (many transactions per round trip).
 * - resolve-ahead: the rows of a group of transactions looked up in one round trip before, each
 *                  transaction checking they are still so (two round trips per group).
 * - full:          the rows looked up and locked inside the transaction itself (two round trips
 *                  per transaction); takes everything: large transactions, truncates, tables
 *                  with other unique keys or without a primary key, column drift.
 *
 * The choice adapts to the traffic: a fast group that misses on its first transaction cost a
 * round trip for nothing, so after a run of such misses (conflict-heavy traffic) the next groups
 * are resolved ahead directly (a budget that doubles per miss, up to 64 transactions); since
 * PostgreSQL parses a whole script before running it, the fast group after a miss holds only as
 * many transactions as went through, doubling back while groups go through whole. Likewise a
 * resolve-ahead group whose first transaction finds its rows changed since the lookup (local
 * writers on the same hot rows) cost two round trips for nothing: after a run of those the next
 * transactions take the full path directly (a budget doubling per such miss, up to 64), and a
 * group resolved ahead again after it probes whether the rows have calmed down.
 */

export type Strategy = 'fast' | 'resolve-ahead' | 'full';

export interface StrategyState {
  /** Source transactions still to resolve ahead before trying the fast path again. */
  aheadBudget: number;
  /** Most transactions the next fast group may hold. */
  fastLimit: number;
  /** The budget the next miss of a whole fast group sets (doubling). */
  fastBackoff: number;
  /** Source transactions still to take the full path before resolving ahead again. */
  fullBudget: number;
  /** The budget the next miss of a whole resolve-ahead group sets (doubling). */
  aheadBackoff: number;
}

export interface StrategyOptions {
  /** Most transactions in a group (BRABANT_APPLY_GROUP_TRANSACTIONS); 1 = grouping off. */
  groupTransactions: number;
}

/** What happened to the last plan: the event the next choice depends on. */
export type StrategyEvent =
  /** Looking at a new position (first, or after a transaction went through the full path). */
  | { kind: 'next' }
  /** The fast planner took no transaction there (the first needs looking up). */
  | { kind: 'fast-none' }
  /** A fast group ran: `committed` of `planned` went through (the next one missed, if fewer). */
  | { kind: 'fast-ran'; planned: number; committed: number }
  /** The resolve-ahead planner took no transaction there. */
  | { kind: 'ahead-none' }
  /** A resolve-ahead group ran: `committed` of `planned` went through. */
  | { kind: 'ahead-ran'; planned: number; committed: number };

export const MAX_FAST_BACKOFF = 64;

export function initialStrategyState(): StrategyState {
  return {
    aheadBudget: 0,
    fastLimit: Number.MAX_SAFE_INTEGER,
    fastBackoff: 0,
    fullBudget: 0,
    aheadBackoff: 0,
  };
}

/**
 * The strategy for the next source transaction after `event`, and the state after it.
 * `inTransaction`: a large source transaction is open (only the full path continues it).
 */
export function nextStrategy(
  state: StrategyState,
  event: StrategyEvent,
  opts: StrategyOptions & { inTransaction: boolean },
): { strategy: Strategy; state: StrategyState } {
  const grouping = opts.groupTransactions > 1 && !opts.inTransaction;
  switch (event.kind) {
    case 'next':
      if (!grouping) return { strategy: 'full', state };
      if (state.fullBudget > 0)
        return { strategy: 'full', state: { ...state, fullBudget: state.fullBudget - 1 } };
      return { strategy: state.aheadBudget > 0 ? 'resolve-ahead' : 'fast', state };
    case 'fast-none':
      return { strategy: 'resolve-ahead', state };
    case 'fast-ran': {
      const whole = event.committed === event.planned;
      const fastBackoff =
        event.committed > 0 ? 0 : Math.min(Math.max(1, state.fastBackoff * 2), MAX_FAST_BACKOFF);
      const next: StrategyState = {
        ...state,
        aheadBudget: fastBackoff,
        fastBackoff,
        fastLimit: whole
          ? Math.min(opts.groupTransactions, state.fastLimit * 2)
          : Math.max(1, event.committed),
      };
      // a miss: the transaction it missed is resolved ahead (it needs its rows looked up)
      if (!whole) return { strategy: 'resolve-ahead', state: next };
      return nextStrategy(next, { kind: 'next' }, opts);
    }
    case 'ahead-none':
      return { strategy: 'full', state };
    case 'ahead-ran': {
      const none = event.committed === 0 && event.planned > 0;
      const aheadBackoff = none ? Math.min(Math.max(1, state.aheadBackoff * 2), MAX_FAST_BACKOFF) : 0;
      const next = {
        ...state,
        aheadBudget: Math.max(0, state.aheadBudget - event.planned),
        aheadBackoff,
        fullBudget: none ? aheadBackoff : 0,
      };
      // a transaction whose rows changed after the lookup goes through the full path
      if (event.committed < event.planned) return { strategy: 'full', state: next };
      return nextStrategy(next, { kind: 'next' }, opts);
    }
    default:
      return event satisfies never;
  }
}

/**
 * Whether the next resolve-ahead group is planned into the round trip that runs the current one
 * (its lookups after the current group's commits): while the budget reaches past this group.
 */
export function pipelineNextGroup(state: StrategyState, planned: number): boolean {
  return state.aheadBudget > planned;
}

/** Most transactions the next fast group may hold. */
export function fastGroupLimit(state: StrategyState, opts: StrategyOptions): number {
  return Math.min(opts.groupTransactions, state.fastLimit);
}
