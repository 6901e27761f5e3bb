/**
 * Applies one source node's stream to the local node, as a pipeline: a strategy is chosen
 * (planner/strategy.ts), its planner turns source transactions and what is known of the local
 * rows into a script of local transactions with expectations (planner/), the executor sends it
 * (executor/), and the outcome reader says what committed and why the rest did not (outcome/).
 * Each source transaction is one local transaction inside the replication-origin session
 * `brabant_<source>` with the source's commit LSN and time, so the origin's progress commits
 * atomically with the data and rows carry the original commit time and origin.
 */
import type pg from 'pg';
import type { DecodedChange, RowChange } from '../protocol/change-decoder.ts';
import { formatLsn, type Lsn, ZERO_LSN } from '../protocol/lsn.ts';
import { originName } from '../protocol/names.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import type { Logger } from '../runtime/log.ts';
import { Executor } from './executor/executor.ts';
import { takeOrigin } from './executor/origin-session.ts';
import { PreparedStatements } from './executor/prepared-statements.ts';
import { FullPath, type OriginState, tablesOf } from './full-path.ts';
import type { ApplyMetrics } from './metrics.ts';
import type { LookupRow } from './outcome/answers.ts';
import { outcomeOf, readScript, type ScriptOutcome, type TxOutcome } from './outcome/outcome.ts';
import { columnDrift } from './planner/decide.ts';
import { planFast } from './planner/fast.ts';
import { type AheadTx, planAheadGroup, planAheadTransactions, planLookups } from './planner/resolve-ahead.ts';
import type { TxPlan } from './planner/script.ts';
import { wholeTransactionAt, withRenames } from './planner/source-transactions.ts';
import {
  fastGroupLimit,
  initialStrategyState,
  nextStrategy,
  pipelineNextGroup,
  type StrategyEvent,
  type StrategyState,
} from './planner/strategy.ts';
import { DdlFailed } from './schema-change.ts';
import { hasDefaultPolicy, type TargetCatalog, type TargetTable } from './target-catalog.ts';

export { APPLY_SESSION_OPTIONS } from './executor/origin-session.ts';
export type { TxOutcome } from './outcome/outcome.ts';

export interface ApplierContext {
  localNode: string;
  catalog: TargetCatalog;
  log: Logger;
  metrics: ApplyMetrics;
  /** Rows of one source transaction applied per round trip; also the chunk size of large transactions. */
  chunkRows: number;
  /** Most source transactions applied together in one round trip by the group strategies (1 = off). */
  groupTransactions: number;
}

/** How many times a source transaction is applied before a collision with local writes is an error. */
const COLLISION_ATTEMPTS = 5;

export class OriginApplier {
  readonly origin: string;
  private roident = 0;
  private strategy: StrategyState = initialStrategyState();
  private readonly state: OriginState;
  private readonly exec: Executor;
  private readonly full: FullPath;

  constructor(
    private readonly db: pg.Client,
    readonly source: string,
    private readonly ctx: ApplierContext,
  ) {
    this.origin = originName(source);
    this.state = {
      source,
      applied: ZERO_LSN,
      lockTables: undefined,
      reportedDrift: new Set(),
      schemaChanges: 0,
    };
    this.exec = new Executor(db, new PreparedStatements(db));
    this.full = new FullPath(this.exec, this.state, ctx);
  }

  /** Last source commit LSN applied (the origin's progress). */
  get progress(): Lsn {
    return this.state.applied;
  }

  /** Whether a source transaction is under way (its first events seen, its last not yet). */
  get inTransaction(): boolean {
    return this.full.inTransaction;
  }

  /** Commit LSN of the source transaction under way, if any. */
  get openCommitLsn(): Lsn | undefined {
    return this.full.openCommitLsn;
  }

  async init(): Promise<void> {
    const s = await takeOrigin(this.db, this.origin, this.ctx.localNode);
    this.state.applied = s.progress;
    this.roident = s.roident;
  }

  /**
   * Lets go of the origin (its node left the cluster): false while a source transaction is under
   * way, else the session no longer holds the origin and this applier is not used again.
   */
  async release(): Promise<boolean> {
    if (this.inTransaction) return false;
    await this.db.query('select pg_replication_origin_session_reset()');
    return true;
  }

  /** Abandons an open local transaction (its source transaction will be delivered again). */
  rollback(): Promise<void> {
    return this.full.rollback();
  }

  /**
   * Where the last `handleMany` stopped because a DDL failed on this node: the source transaction
   * the stream must pause at (its outcomes before it were returned), and why.
   */
  pausedAt: { commitLsn: Lsn; reason: string } | undefined;

  /**
   * Feeds a run of this source's events, in stream order; resolves with the outcome of every
   * source transaction the run ended (committed).
   */
  async handleMany(run: DecodedChange[]): Promise<TxOutcome[]> {
    let changes = run;
    const outcomes: TxOutcome[] = [];
    this.pausedAt = undefined;
    let schemaChanges = this.state.schemaChanges;
    let { table, renamed } = await this.groupableTables(changes);
    changes = renamed(changes);
    const opts = () => ({ groupTransactions: this.ctx.groupTransactions, inTransaction: this.inTransaction });
    let event: StrategyEvent = { kind: 'next' };
    let i = 0;
    while (i < changes.length) {
      if (this.state.schemaChanges !== schemaChanges) {
        // a DDL ran: the tables the group planners use are read again
        schemaChanges = this.state.schemaChanges;
        ({ table, renamed } = await this.groupableTables(changes));
        changes = renamed(changes);
      }
      const next = nextStrategy(this.strategy, event, opts());
      this.strategy = next.state;
      switch (next.strategy) {
        case 'fast': {
          const plan = planFast(changes, i, {
            applied: this.state.applied,
            limit: fastGroupLimit(this.strategy, this.ctx),
            chunkRows: this.ctx.chunkRows,
            statements: this.exec.statements,
            roident: this.roident,
            table,
          });
          if (plan.txs.length === 0) {
            i = plan.next;
            event = { kind: 'fast-none' };
            break;
          }
          const committed = await this.runPlanned(plan.txs);
          outcomes.push(...committed);
          i = committed.length === plan.txs.length ? plan.next : plan.txs[committed.length]!.start;
          event = { kind: 'fast-ran', planned: plan.txs.length, committed: committed.length };
          break;
        }
        case 'resolve-ahead': {
          const r = await this.resolveAhead(changes, i, table);
          outcomes.push(...r.outcomes);
          i = r.next;
          event = r.event;
          break;
        }
        case 'full': {
          const whole = this.inTransaction ? undefined : wholeTransactionAt(changes, i);
          let o: TxOutcome | undefined;
          try {
            o =
              whole === undefined
                ? await this.full.handle(changes[i]!)
                : await this.applyWhole(changes, i, whole.end);
          } catch (err) {
            if (!(err instanceof DdlFailed)) throw err;
            await this.recordDdlFailure(err);
            this.pausedAt = { commitLsn: err.commitLsn, reason: err.reason };
            return outcomes;
          }
          if (o !== undefined) outcomes.push(o);
          i = whole === undefined ? i + 1 : whole.end;
          event = { kind: 'next' };
          break;
        }
        default:
          next.strategy satisfies never;
      }
    }
    return outcomes;
  }

  /**
   * The full path for a whole source transaction (events `start` to `end` of `changes`), under
   * the error policy. A key absent at its lookup is not locked, so a local transaction may insert
   * it before this one writes, and local writers may deadlock with it: the transaction is applied
   * again from its start (reapply), its new lookups seeing that write; the last attempt first
   * locks its tables against local writes (SHARE ROW EXCLUSIVE: local writers wait for this one
   * transaction), so writers that keep recreating the same keys cannot hold apply back.
   */
  private async applyWhole(
    changes: DecodedChange[],
    start: number,
    end: number,
  ): Promise<TxOutcome | undefined> {
    const first = changes[start]!;
    const commitLsn = first.tx.commitLsn;
    const doing = `applying ${this.source}'s transaction ${formatLsn(commitLsn)}`;
    let isolated = false;
    for (let attempt = 1; ; attempt++) {
      if (attempt === COLLISION_ATTEMPTS) {
        this.state.lockTables = { commitLsn, tables: tablesOf(changes, start, end) };
        this.ctx.log.info(
          { source: this.source, commitLsn: formatLsn(commitLsn), attempts: attempt - 1 },
          'a source transaction keeps colliding with local writes; applying it with its tables locked',
        );
      }
      try {
        let outcome: TxOutcome | undefined;
        for (let j = start; j < end; j++) outcome = (await this.full.handle(changes[j]!)) ?? outcome;
        return outcome;
      } catch (err) {
        // handle() rolled the local transaction back
        const d = directiveFor(err, {
          doing,
          // tables with other unique keys catch violations of those themselves: one that reaches
          // here is on the key, a local insert that raced this transaction
          ownKeyViolation: () => true,
        });
        if (d.kind === 'reapply' && attempt < COLLISION_ATTEMPTS) {
          this.ctx.metrics.collisionRetries.inc({ origin: this.source });
          this.ctx.log.debug(
            { source: this.source, commitLsn: formatLsn(commitLsn), attempt, err: d.reason },
            'a source transaction collided with a concurrent local write; applying it again',
          );
          continue;
        }
        if (d.kind !== 'deadletter') throw err;
        if (!isolated) {
          // find the rows at fault: the transaction again, each statement under a savepoint
          isolated = true;
          this.full.isolate(commitLsn);
          this.ctx.log.warn(
            { source: this.source, commitLsn: formatLsn(commitLsn), reason: d.reason },
            'a change of this source transaction cannot be applied here; applying it again row by row to set aside only what fails',
          );
          continue;
        }
        // even in isolation (e.g. a constraint checked at commit): set the whole transaction aside
        return this.setAside(changes, start, end, d.reason);
      }
    }
  }

  /** The ddl_failed conflict of a paused DDL, logged once (the stream retries it, and would again). */
  private async recordDdlFailure(err: DdlFailed): Promise<void> {
    this.ctx.log.error(
      { code: err.code, source: this.source, commitLsn: formatLsn(err.commitLsn), reason: err.reason },
      err.message,
    );
    await this.full.recordOnce(err.record);
  }

  /** Moves the origin past a source transaction whose rows all go to the dead-letter topic. */
  private async setAside(
    changes: DecodedChange[],
    start: number,
    end: number,
    reason: string,
  ): Promise<TxOutcome> {
    const first = changes[start]!;
    const rows = changes.slice(start, end).filter((c): c is RowChange => c.kind === 'row');
    this.ctx.log.error(
      { source: this.source, commitLsn: formatLsn(first.tx.commitLsn), rows: rows.length, reason },
      'source transaction set aside whole: its rows are in the dead-letter topic',
    );
    await this.full.setAside(first.tx.commitLsn, first.tx.commitTs);
    this.ctx.metrics.rows.inc({ origin: this.source, action: 'dead_letter' }, rows.length);
    return {
      commitLsn: first.tx.commitLsn,
      commitTs: first.tx.commitTs,
      rows: rows.length,
      conflicts: [],
      deadLetters: rows.map((change) => ({ reason: `transaction set aside: ${reason}`, change })),
    };
  }

  /**
   * Resolve ahead from `from`: groups planned one after another, the next group's lookups in the
   * round trip that runs the current one while the strategy's budget reaches past it, so each
   * group after the first costs one round trip, not two.
   */
  private async resolveAhead(
    changes: DecodedChange[],
    from: number,
    table: (c: RowChange) => TargetTable | undefined,
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
      const more = pipelineNextGroup(this.strategy, group.txs.length) && group.next < changes.length;
      const following = more
        ? planAheadGroup(changes, group.next, { ...input, applied: this.state.applied })
        : undefined;
      const r = await this.runAhead(group.txs, looked, following?.txs);
      outcomes.push(...r.outcomes);
      const event: StrategyEvent = {
        kind: 'ahead-ran',
        planned: group.txs.length,
        committed: r.outcomes.length,
      };
      if (r.outcomes.length < group.txs.length) {
        // its local state changed under it (a local write meanwhile): the full path takes it
        return { outcomes, next: group.txs[r.outcomes.length]!.start, event };
      }
      if (following === undefined || following.txs.length === 0 || r.nextLookups === undefined)
        return { outcomes, next: group.next, event };
      this.strategy = nextStrategy(this.strategy, event, {
        groupTransactions: this.ctx.groupTransactions,
        inTransaction: false,
      }).state;
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
  ): Promise<{ outcomes: TxOutcome[]; nextLookups?: Map<RowChange, LookupRow> }> {
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
            { source: this.source, err: d.reason },
            'resolve-ahead lookups failed; the full path takes over',
          );
          return { outcomes: [] };
        }
        state = lookups.read(answer.results.slice(1, 1 + lookups.count) as { rows: LookupRow[] }[]);
      }
    }
    const planned = planAheadTransactions(txs, state, {
      statements: this.exec.statements,
      localNode: this.ctx.localNode,
      begin: (lsn) => this.full.beginStatements(lsn),
      commitSetup: (lsn, ts) => this.full.commitSetup(lsn, ts),
      conflictsInsert: (p) => this.full.conflictsInsert(p.conflicts),
    });
    const nextLookups =
      next === undefined || next.length === 0 ? undefined : planLookups(next, this.exec.statements);
    const scripts = planned.map((p) => p.script);
    if (nextLookups !== undefined) scripts.push(nextLookups.script);
    const answer = await this.exec.runScript(scripts.join(';\n'));
    const outcomes = this.committed(planned, readScript(planned, answer));
    if (nextLookups === undefined || !answer.ok) return { outcomes };
    const results = answer.results.slice(-1 - nextLookups.count, -1) as { rows: LookupRow[] }[];
    return { outcomes, nextLookups: nextLookups.read(results) };
  }

  /** Runs planned whole transactions (the fast strategy) in one round trip; the outcomes of those that committed. */
  private async runPlanned(txs: TxPlan[]): Promise<TxOutcome[]> {
    const answer = await this.exec.runScript(txs.map((x) => x.script).join('\n'));
    return this.committed(txs, readScript(txs, answer));
  }

  /** The committed prefix of a script: progress, metrics, outcomes; and why the rest stopped. */
  private committed(txs: TxPlan[], read: ScriptOutcome): TxOutcome[] {
    const done = txs.slice(0, read.committed);
    const m = this.ctx.metrics;
    for (const x of done) {
      this.state.applied = x.commitLsn;
      for (const [action, n] of x.actions) m.rows.inc({ origin: this.source, action }, n);
      for (const c of x.conflicts) m.conflicts.inc({ kind: c.kind, resolution: c.resolution });
    }
    if (done.length > 0) {
      const last = done[done.length - 1]!;
      m.transactions.inc({ origin: this.source }, done.length);
      m.appliedLsn.set(Number(last.commitLsn), { origin: this.source });
      m.lagSeconds.set(Number(BigInt(Date.now()) * 1000n - last.commitTs) / 1e6, { origin: this.source });
    }
    if (read.stopped?.why === 'expectation') m.fastPathMisses.inc({ origin: this.source });
    else if (read.stopped !== undefined) {
      const missed = txs[read.committed];
      this.ctx.log.debug(
        {
          source: this.source,
          commitLsn: missed && formatLsn(missed.commitLsn),
          err: read.stopped.error.message,
        },
        'a grouped transaction failed on a statement; applying it through the full path',
      );
    }
    return done.map(outcomeOf);
  }

  /**
   * The target tables of a run's changes, loaded once, as the function the group planners use:
   * the table of a change if a group strategy may take it (found by its primary key, no other
   * unique key, no old row sent, no column drift to report), else undefined (the full path).
   */
  private async groupableTables(changes: DecodedChange[]): Promise<{
    table: (c: RowChange) => TargetTable | undefined;
    renamed: (cs: DecodedChange[]) => DecodedChange[];
  }> {
    const tables = new Map<string, TargetTable | undefined>();
    for (const c of changes) {
      if (c.kind !== 'row') continue;
      const k = `${c.schema}\u0000${c.table}`;
      if (!tables.has(k)) tables.set(k, await this.ctx.catalog.table(c.schema, c.table));
    }
    const of = (c: RowChange) => tables.get(`${c.schema}\u0000${c.table}`);
    const anyRenames = [...tables.values()].some((t) => t !== undefined && t.renames.size > 0);
    return {
      renamed: (cs) =>
        anyRenames ? cs.map((c) => (c.kind === 'row' ? withRenames(of(c)?.renames ?? new Map(), c) : c)) : cs,
      table: (c) => {
        if (c.op === 'TRUNCATE' || c.before !== null || c.key === null) return undefined;
        if (c.op !== 'DELETE' && c.after === null) return undefined;
        const t = of(c);
        if (t === undefined || t.otherUniqueKeys || t.primaryKey.length === 0 || !hasDefaultPolicy(t))
          return undefined;
        if (!t.primaryKey.every((k) => typeof c.key![k] === 'string')) return undefined;
        return columnDrift(t, c, this.state.reportedDrift).length > 0 ? undefined : t;
      },
    };
  }
}
