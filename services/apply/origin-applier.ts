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
import { SQLSTATE, sqlstateOf } from '../runtime/sqlstate.ts';
import { Executor } from './executor/executor.ts';
import { takeOrigin } from './executor/origin-session.ts';
import { PreparedStatements } from './executor/prepared-statements.ts';
import { FullPath, type OriginState } from './full-path.ts';
import { GroupRunner, groupableTables } from './group-runner.ts';
import type { ApplyMetrics } from './metrics.ts';
import { tablesOf } from './open-tx.ts';
import type { TxOutcome } from './outcome/outcome.ts';
import { planFast } from './planner/fast.ts';
import { wholeTransactionAt } from './planner/source-transactions.ts';
import {
  fastGroupLimit,
  initialStrategyState,
  nextStrategy,
  type Strategy,
  type StrategyEvent,
  type StrategyState,
} from './planner/strategy.ts';
import { type ReplayResult, replayTransaction } from './replay.ts';
import { DdlFailed } from './schema-change.ts';
import type { TargetCatalog } from './target-catalog.ts';

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
  private readonly groups: GroupRunner;

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
    // every round trip of this origin's connection counted (the cost the strategies trade)
    const query = ((...args: Parameters<pg.Client['query']>) => {
      ctx.metrics.roundTrips.inc({ origin: source });
      return (db.query as (...a: unknown[]) => unknown).apply(db, args);
    }) as pg.Client['query'];
    const counted = { query };
    this.exec = new Executor(counted, new PreparedStatements(counted));
    this.full = new FullPath(this.exec, this.state, ctx);
    this.groups = new GroupRunner(this.exec, this.full, this.state, ctx);
  }

  private counted(strategy: Strategy, transactions: number): void {
    if (transactions > 0)
      this.ctx.metrics.strategyTransactions.inc({ origin: this.source, strategy }, transactions);
  }

  /** The strategy state, for the resolve-ahead runner that moves it on between its groups. */
  private readonly strategyRef = {
    get: () => this.strategy,
    set: (s: StrategyState) => {
      this.strategy = s;
    },
  };

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

  /** The stream's runs and the operator's replays take this source's connection one at a time. */
  private busy: Promise<unknown> = Promise.resolve();
  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.busy.then(f, f);
    this.busy = run.catch(() => {});
    return run;
  }

  /**
   * Applies a dead-lettered change again (replay.ts) between two of this source's transactions;
   * 'busy' while one is open (a large transaction spanning runs): the caller tries again later.
   */
  replay(
    changes: RowChange[],
    finish: string,
    note?: (outcome: TxOutcome) => string | undefined,
  ): Promise<ReplayResult | 'busy'> {
    return this.exclusive(async () =>
      this.inTransaction
        ? 'busy'
        : replayTransaction(
            { db: this.db, statements: this.exec.statements, ctx: this.ctx, source: this.source },
            changes,
            finish,
            note,
          ),
    );
  }

  /**
   * Feeds a run of this source's events, in stream order; resolves with the outcome of every
   * source transaction the run ended (committed).
   */
  handleMany(run: DecodedChange[]): Promise<TxOutcome[]> {
    return this.exclusive(() => this.handleRun(run));
  }

  private async handleRun(run: DecodedChange[]): Promise<TxOutcome[]> {
    let changes = run;
    const outcomes: TxOutcome[] = [];
    this.pausedAt = undefined;
    let schemaChanges = this.state.schemaChanges;
    let { table, renamed } = await groupableTables(this.ctx.catalog, changes, this.state.reportedDrift);
    changes = renamed(changes);
    const opts = () => ({ groupTransactions: this.ctx.groupTransactions, inTransaction: this.inTransaction });
    let event: StrategyEvent = { kind: 'next' };
    let i = 0;
    while (i < changes.length) {
      if (this.state.schemaChanges !== schemaChanges) {
        // a DDL ran: the tables the group planners use are read again
        schemaChanges = this.state.schemaChanges;
        ({ table, renamed } = await groupableTables(this.ctx.catalog, changes, this.state.reportedDrift));
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
          const committed = await this.groups.runPlanned(plan.txs);
          outcomes.push(...committed);
          this.counted('fast', committed.length);
          i = committed.length === plan.txs.length ? plan.next : plan.txs[committed.length]!.start;
          event = { kind: 'fast-ran', planned: plan.txs.length, committed: committed.length };
          break;
        }
        case 'resolve-ahead': {
          const r = await this.groups.resolveAhead(changes, i, table, this.strategyRef);
          outcomes.push(...r.outcomes);
          this.counted('resolve-ahead', r.outcomes.length);
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
          if (o !== undefined) {
            outcomes.push(o);
            this.counted('full', 1);
          }
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
    let refreshed = false;
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
        if (!refreshed && sqlstateOf(err) === SQLSTATE.UNDEFINED_COLUMN) {
          // a column dropped or renamed on this node since its table was read (its NOTIFY not
          // yet seen): the table is read again and the transaction applied again, once
          refreshed = true;
          this.ctx.log.info(
            { source: this.source, commitLsn: formatLsn(commitLsn), err: (err as Error).message },
            'a table changed on this node since apply read it: reading it again and applying the transaction again',
          );
          this.ctx.catalog.invalidate();
          this.state.schemaChanges++;
          continue;
        }
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
}
