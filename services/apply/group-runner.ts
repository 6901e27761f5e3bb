/**
 * The group strategies' runs (planner/strategy.ts): the fast path's planned transactions in one
 * round trip, and resolve ahead, whose lookups of the next group ride in the round trip of the
 * current one; the committed prefix of each script read as outcomes, progress and metrics. And
 * the tables a group strategy may take, loaded once per run.
 */
import type { DecodedChange, RowChange } from '../protocol/change-decoder.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { originName } from '../protocol/names.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import type { Executor } from './executor/executor.ts';
import type { FullPath, OriginState } from './full-path.ts';
import type { ApplierContext } from './origin-applier.ts';
import type { LookupRow } from './outcome/answers.ts';
import { outcomeOf, readScript, type ScriptOutcome, type TxOutcome } from './outcome/outcome.ts';
import { columnDrift, missingFromShape } from './planner/decide.ts';
import { type AheadTx, planAheadGroup, planAheadTransactions, planLookups } from './planner/resolve-ahead.ts';
import type { TxPlan } from './planner/script.ts';
import { withRenames } from './planner/source-transactions.ts';
import {
  nextStrategy,
  pipelineNextGroup,
  type StrategyEvent,
  type StrategyState,
} from './planner/strategy.ts';
import { hasDefaultPolicy, type TargetCatalog, type TargetTable } from './target-catalog.ts';

export class GroupRunner {
  constructor(
    private readonly exec: Executor,
    private readonly full: FullPath,
    private readonly state: OriginState,
    private readonly ctx: ApplierContext,
  ) {}

  /**
   * Resolve ahead from `from`: groups planned one after another, the next group's lookups in the
   * round trip that runs the current one while the strategy's budget reaches past it, so each
   * group after the first costs one round trip, not two.
   */
  async resolveAhead(
    changes: DecodedChange[],
    from: number,
    table: (c: RowChange) => TargetTable | undefined,
    strategy: { get(): StrategyState; set(s: StrategyState): void },
  ): Promise<{ outcomes: TxOutcome[]; next: number; event: StrategyEvent }> {
    const input = {
      applied: this.state.applied,
      groupTransactions: this.ctx.groupTransactions,
      chunkRows: this.ctx.chunkRows,
      table,
    };
    let group = planAheadGroup(changes, from, input);
    if (group.txs.length === 0) return { outcomes: [], next: group.next, event: { kind: 'ahead-none' } };
    const outcomes: TxOutcome[] = [];
    let looked: Map<RowChange, LookupRow> | undefined;
    for (;;) {
      const more = pipelineNextGroup(strategy.get(), group.txs.length) && group.next < changes.length;
      const following = more
        ? planAheadGroup(changes, group.next, { ...input, applied: this.state.applied })
        : undefined;
      const r = await this.runAhead(group.txs, looked, following?.txs);
      outcomes.push(...r.outcomes);
      const event: StrategyEvent = {
        kind: 'ahead-ran',
        planned: r.planned,
        committed: r.outcomes.length,
      };
      if (r.outcomes.length < group.txs.length) {
        // its local state changed under it (a local write meanwhile): the full path takes it; or
        // the plan ended early (a key left in a state only a new lookup knows): planned again
        return { outcomes, next: group.txs[r.outcomes.length]!.start, event };
      }
      if (following === undefined || following.txs.length === 0 || r.nextLookups === undefined)
        return { outcomes, next: group.next, event };
      strategy.set(
        nextStrategy(strategy.get(), event, {
          groupTransactions: this.ctx.groupTransactions,
          inTransaction: false,
        }).state,
      );
      group = following;
      looked = r.nextLookups;
    }
  }

  /**
   * One resolve-ahead group: its lookups (unless `looked` has them, from the previous group's
   * round trip), then a script of its transactions resting on them, followed by the lookups of
   * the `next` group. Resolves with the outcomes of those that committed: all, or those before
   * the first whose state changed meanwhile.
   */
  private async runAhead(
    txs: AheadTx[],
    looked: Map<RowChange, LookupRow> | undefined,
    next: AheadTx[] | undefined,
  ): Promise<{ outcomes: TxOutcome[]; planned: number; nextLookups?: Map<RowChange, LookupRow> }> {
    let state = looked;
    if (state === undefined) {
      const lookups = planLookups(txs, this.exec.statements);
      if (lookups === undefined) state = new Map();
      else {
        const answer = await this.exec.runRolledBack(lookups.script);
        if (!answer.ok) {
          // a deadlock with local writers (their delete trigger locks the tombstone after the
          // row, the lookups the other way round), or a key that does not fit the target (the
          // full path sets it aside): nothing applied, the full path takes over
          const d = directiveFor(answer.error, { doing: 'looking up rows to resolve ahead' });
          if (d.kind === 'retry' || d.kind === 'stop') throw answer.error;
          this.ctx.log.debug(
            { source: this.state.source, err: d.reason },
            'resolve-ahead lookups failed; the full path takes over',
          );
          return { outcomes: [], planned: txs.length };
        }
        state = lookups.read(answer.results.slice(1, 1 + lookups.count) as { rows: LookupRow[] }[]);
      }
    }
    const planned = planAheadTransactions(txs, state, {
      statements: this.exec.statements,
      localNode: this.ctx.localNode,
      origin: originName(this.state.source),
      begin: (lsn) => this.full.beginStatements(lsn),
      commitSetup: (lsn, ts) => this.full.commitSetup(lsn, ts),
      conflictsInsert: (p) => this.full.conflictsInsert(p.conflicts),
    });
    // the next group's lookups go with this script only when it holds the whole group
    const nextLookups =
      next === undefined || next.length === 0 || planned.length < txs.length
        ? undefined
        : planLookups(next, this.exec.statements);
    const scripts = planned.map((p) => p.script);
    if (nextLookups !== undefined) scripts.push(nextLookups.script);
    const answer = await this.exec.runScript(scripts.join(';\n'));
    const outcomes = this.committed(planned, readScript(planned, answer));
    if (nextLookups === undefined || !answer.ok) return { outcomes, planned: planned.length };
    const results = answer.results.slice(-1 - nextLookups.count, -1) as { rows: LookupRow[] }[];
    return { outcomes, planned: planned.length, nextLookups: nextLookups.read(results) };
  }

  /** Runs planned whole transactions (the fast strategy) in one round trip; the outcomes of those that committed. */
  async runPlanned(txs: TxPlan[]): Promise<TxOutcome[]> {
    const answer = await this.exec.runScript(txs.map((x) => x.script).join('\n'));
    return this.committed(txs, readScript(txs, answer));
  }

  /** The committed prefix of a script: progress, metrics, outcomes; and why the rest stopped. */
  private committed(txs: TxPlan[], read: ScriptOutcome): TxOutcome[] {
    const done = txs.slice(0, read.committed);
    const m = this.ctx.metrics;
    for (const x of done) {
      this.state.applied = x.commitLsn;
      for (const [action, n] of x.actions) m.rows.inc({ origin: this.state.source, action }, n);
      for (const c of x.conflicts) m.conflicts.inc({ kind: c.kind, resolution: c.resolution });
    }
    if (done.length > 0) {
      const last = done[done.length - 1]!;
      m.transactions.inc({ origin: this.state.source }, done.length);
      m.appliedLsn.set(Number(last.commitLsn), { origin: this.state.source });
      m.lagSeconds.set(Number(BigInt(Date.now()) * 1000n - last.commitTs) / 1e6, {
        origin: this.state.source,
      });
    }
    if (read.stopped?.why === 'expectation') m.fastPathMisses.inc({ origin: this.state.source });
    else if (read.stopped !== undefined) {
      const missed = txs[read.committed];
      this.ctx.log.debug(
        {
          source: this.state.source,
          commitLsn: missed && formatLsn(missed.commitLsn),
          err: read.stopped.error.message,
        },
        'a grouped transaction failed on a statement; applying it through the full path',
      );
    }
    return done.map(outcomeOf);
  }
}

/**
 * The target tables of a run's changes, loaded once, as the function the group planners use:
 * the table of a change if a group strategy may take it (found by its primary key, no other
 * unique key, no old row sent, no column drift to report), else undefined (the full path).
 */
/** An insert into a table without a key or any unique index (pgbench_history): nothing to look up. */
export function isKeylessInsert(t: TargetTable, c: RowChange): boolean {
  return (
    c.op === 'INSERT' &&
    t.primaryKey.length === 0 &&
    !t.otherUniqueKeys &&
    t.replicaIdentity !== 'f' &&
    c.key !== null &&
    Object.keys(c.key).length === 0
  );
}

export async function groupableTables(
  catalog: TargetCatalog,
  changes: DecodedChange[],
  reportedDrift: Set<string>,
): Promise<{
  table: (c: RowChange) => TargetTable | undefined;
  renamed: (cs: DecodedChange[]) => DecodedChange[];
}> {
  const tables = new Map<string, TargetTable | undefined>();
  for (const c of changes) {
    if (c.kind !== 'row') continue;
    const k = `${c.schema}\u0000${c.table}`;
    if (!tables.has(k)) tables.set(k, await catalog.table(c.schema, c.table));
  }
  const of = (c: RowChange) => tables.get(`${c.schema}\u0000${c.table}`);
  const anyRenames = [...tables.values()].some((t) => t !== undefined && t.renames.size > 0);
  return {
    renamed: (cs) =>
      anyRenames ? cs.map((c) => (c.kind === 'row' ? withRenames(of(c)?.renames ?? new Map(), c) : c)) : cs,
    table: (c) => {
      if (c.op === 'TRUNCATE' || c.before !== null || c.key === null) return undefined;
      // decided by its original version, which only the full path reads (apply/resync.ts)
      if (c.resync !== undefined) return undefined;
      if (c.op !== 'DELETE' && c.after === null) return undefined;
      const t = of(c);
      if (t === undefined || t.otherUniqueKeys || !hasDefaultPolicy(t)) return undefined;
      // a table without a key replicates its inserts only, each a row of its own: never a conflict
      if (t.primaryKey.length === 0) return isKeylessInsert(t, c) ? t : undefined;
      if (!t.primaryKey.every((k) => typeof c.key![k] === 'string')) return undefined;
      // a row of an older shape goes through the full path (planner/decide.ts withAddedColumns)
      if (missingFromShape(t, c).length > 0) return undefined;
      return columnDrift(t, c, reportedDrift).length > 0 ? undefined : t;
    },
  };
}
