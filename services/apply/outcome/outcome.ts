/**
 * The outcome reader (pure): what the node's answers to a script mean — which planned local
 * transactions committed, what the source transactions' outcomes are (rows, conflicts, dead
 * letters), and why the first one that did not commit stopped.
 */
import type { Lsn } from '../../protocol/lsn.ts';
import { SQLSTATE } from '../../runtime/sqlstate.ts';
import type { ScriptAnswer } from '../executor/executor.ts';
import type { TxPlan } from '../planner/script.ts';
import type { ConflictRecord, DeadLetter } from './conflict-log.ts';

/** A source transaction applied (committed) on this node. */
export interface TxOutcome {
  commitLsn: Lsn;
  commitTs: bigint;
  rows: number;
  conflicts: ConflictRecord[];
  deadLetters: DeadLetter[];
}

export interface ScriptOutcome {
  /** How many of the planned transactions committed (a prefix, in order). */
  committed: number;
  /**
   * Why the next one did not: `expectation` (a row was not in the state the plan rested on:
   * another strategy resolves it), `statement` (a statement failed: see `error`), or none.
   */
  stopped?: { why: 'expectation' | 'statement'; error: Error };
}

/** Reads a script's answer: the transactions at or below the committed progress went through. */
export function readScript(txs: { commitLsn: Lsn }[], answer: ScriptAnswer): ScriptOutcome {
  if (answer.ok) return { committed: txs.length };
  let committed = txs.findIndex((x) => x.commitLsn > answer.progress);
  if (committed < 0) committed = txs.length;
  const why = answer.sqlstate === SQLSTATE.BRABANT_EXPECTATION_FAILED ? 'expectation' : 'statement';
  return { committed, stopped: { why, error: answer.error } };
}

export function outcomeOf(plan: TxPlan): TxOutcome {
  return {
    commitLsn: plan.commitLsn,
    commitTs: plan.commitTs,
    rows: plan.sourceRows,
    conflicts: plan.conflicts,
    deadLetters: plan.deadLetters,
  };
}
