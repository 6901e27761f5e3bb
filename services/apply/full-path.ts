/**
 * The full strategy's driver: one source transaction at a time, event by event, in one open
 * local transaction (a large one in chunks of `chunkRows`, so memory stays bounded). Per batch
 * (one table, distinct keys) the planner (planner/full.ts) gives the statements, the executor
 * sends them, and the answers feed `decide()`. Writes do not wait for their own round trip: they
 * go with the next statement that answers (the next lookup, or the commit with the conflict log),
 * so a one-row transaction takes two round trips. Tables with other unique keys write each
 * statement under a savepoint in its own round trip: a unique violation on another key sends that
 * row to the dead-letter topic (multiple_unique_conflicts) and the others are applied.
 */
import type { DecodedChange, RowChange } from '../protocol/change-decoder.ts';
import { formatLsn, type Lsn } from '../protocol/lsn.ts';
import { codecFromAvro } from '../protocol/pg-types.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import type { Logger } from '../runtime/log.ts';
import type { Executor } from './executor/executor.ts';
import { writeGuarded } from './guarded-writes.ts';
import type { ApplyMetrics } from './metrics.ts';
import { newOpenTx, type OpenTx } from './open-tx.ts';
import type { LookupRow } from './outcome/answers.ts';
import { CONFLICTS_INSERT, type ConflictRecord, conflictLogRows } from './outcome/conflict-log.ts';
import type { TxOutcome } from './outcome/outcome.ts';
import { columnDrift, conflictRecord, decide, driftId, withAddedColumns } from './planner/decide.ts';
import {
  executeWrite,
  insertNewStep,
  keyColumns,
  lookupStep,
  plainInserts,
  type RowWrite,
  splitBatches,
  writesFor,
} from './planner/full.ts';
import type { ConflictKind, Resolution } from './planner/resolve.ts';
import { addAction, FENCE, literal, TAKE_XID, XACT_SETUP } from './planner/script.ts';
import { expandKeyChanges, withRenames } from './planner/source-transactions.ts';
import { applySchemaChange, runsOutsideTransaction } from './schema-change.ts';
import { byWholeRow, TargetCatalog, type TargetTable } from './target-catalog.ts';

/** What the strategies of one origin share: its progress, and what is known of the target. */
export interface OriginState {
  readonly source: string;
  /** Last source commit LSN applied (the origin's progress). */
  applied: Lsn;
  /** Tables the next local transaction of this source transaction locks first (collision retries). */
  lockTables: { commitLsn: Lsn; tables: string[] } | undefined;
  /** `schema.table.column` of column drift already reported once. */
  readonly reportedDrift: Set<string>;
  /** DDL events applied so far (what the group planners knew of the target may be stale after one). */
  schemaChanges: number;
}

export interface FullPathContext {
  localNode: string;
  catalog: TargetCatalog;
  log: Logger;
  metrics: ApplyMetrics;
  chunkRows: number;
}

/** A batch ready for its lookup: its table, the columns rows are found by, its rows, the statement. */
interface Prepared {
  t: TargetTable;
  keyCols: string[];
  batch: RowChange[];
  lookup: string;
}

const timestamptz = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });

export class FullPath {
  private tx: OpenTx | undefined;
  /**
   * The source transaction applied in isolation: every statement under a savepoint, a statement
   * that fails on the data (the error policy's dead letter) retried row by row, and the rows
   * that still fail set aside as dead letters while the rest applies.
   */
  private isolating: Lsn | undefined;

  constructor(
    private readonly exec: Executor,
    private readonly state: OriginState,
    private readonly ctx: FullPathContext,
  ) {}

  get inTransaction(): boolean {
    return this.tx !== undefined;
  }

  get openCommitLsn(): Lsn | undefined {
    return this.tx?.commitLsn;
  }

  /**
   * Feeds one event of this source, in stream order. Resolves with the outcome when the event
   * ended a source transaction that was applied (committed), else undefined. On an error the
   * local transaction is rolled back (the source transaction will be delivered again).
   */
  async handle(change: DecodedChange): Promise<TxOutcome | undefined> {
    try {
      return await this.handleNow(change);
    } catch (err) {
      await this.rollback();
      throw err;
    }
  }

  /** Applies the source transaction `commitLsn` in isolation the next time it is fed (see `isolating`). */
  isolate(commitLsn: Lsn): void {
    this.isolating = commitLsn;
  }

  /**
   * Commits a local transaction that only moves the origin past source transaction `commitLsn`
   * (its rows set aside as dead letters by the caller): the last resort after applying it in
   * isolation failed too, so one change that cannot be applied never stops the stream.
   */
  async setAside(commitLsn: Lsn, commitTs: bigint): Promise<void> {
    await this.exec.send([
      ...this.beginStatements(),
      TAKE_XID,
      this.commitSetup(commitLsn, commitTs),
      'commit',
    ]);
    this.state.applied = commitLsn;
    this.ctx.metrics.transactions.inc({ origin: this.state.source });
  }

  /**
   * A conflict record of a transaction that did not commit (a failed DDL), logged once. Its own
   * transaction resets the origin's transaction setup first: a commit in this session would
   * otherwise carry the progress of the transaction that was rolled back.
   */
  async recordOnce(record: ConflictRecord): Promise<void> {
    const seen = await this.exec.maintain((db) =>
      db.query(
        'select 1 from brabant.conflicts where kind = $1 and remote_node = $2 and remote_commit_lsn = $3::pg_lsn',
        [record.kind, record.remoteNode, formatLsn(record.remoteCommitLsn)],
      ),
    );
    if ((seen.rowCount ?? 0) > 0) return;
    await this.exec.send([
      'begin',
      'select pg_replication_origin_xact_reset()',
      this.conflictsInsert([record]),
      'commit',
    ]);
  }

  /** Abandons an open local transaction (its source transaction will be delivered again). */
  async rollback(): Promise<void> {
    if (this.tx?.begun) await this.exec.rollback();
    this.tx = undefined;
  }

  /** The begin of a local transaction: the fence and the tables a collision retry locks. */
  beginStatements(commitLsn?: Lsn): string[] {
    const out = ['begin', FENCE];
    const lock = this.state.lockTables;
    if (lock !== undefined && lock.commitLsn === commitLsn) {
      for (const t of lock.tables) out.push(`lock table ${t} in share row exclusive mode`);
    }
    this.state.lockTables = undefined;
    return out;
  }

  /** The origin setup of a local transaction, just before its commit (script.ts XACT_SETUP). */
  commitSetup(commitLsn: Lsn, commitTs: bigint): string {
    return this.exec.statements.execute(XACT_SETUP, 'setup', () => XACT_SETUP, [
      literal(formatLsn(commitLsn)),
      literal(timestamptz.toText(commitTs)),
    ]);
  }

  /** The conflict log of a transaction as one EXECUTE (it goes with the commit). */
  conflictsInsert(conflicts: ConflictRecord[]): string {
    return this.exec.statements.execute(CONFLICTS_INSERT, 'conflicts', () => CONFLICTS_INSERT, [
      literal(JSON.stringify(conflictLogRows(conflicts))),
    ]);
  }

  private async handleNow(change: DecodedChange): Promise<TxOutcome | undefined> {
    const { commitLsn, index } = change.tx;
    if (commitLsn <= this.state.applied) return undefined; // applied before (redelivery after a restart)
    if (this.tx !== undefined && this.tx.commitLsn !== commitLsn) {
      // The source transaction before this one never ended in the stream (its node's slot was
      // recreated mid-transaction): its partial effects must not commit.
      this.ctx.log.error(
        { source: this.state.source, commitLsn: formatLsn(this.tx.commitLsn) },
        'source transaction ended without its last event; rolled back',
      );
      this.ctx.metrics.incompleteTransactions.inc({ origin: this.state.source });
      await this.rollback();
    }
    if (this.tx === undefined) this.tx = newOpenTx(commitLsn, change.tx.commitTs);
    const tx = this.tx;
    if (index <= tx.lastIndex) return undefined; // redelivered part of the open transaction
    tx.lastIndex = index;
    if (change.kind === 'row') {
      tx.pending.push(change);
      if (tx.pending.length >= this.ctx.chunkRows) await this.applyPending(tx);
    } else if (change.control === 'DDL') {
      // at its place: the rows before it first, then it, in this same local transaction
      if (tx.pending.length > 0) await this.applyPending(tx);
      // CONCURRENTLY runs before the local transaction begins (its source transaction has nothing else)
      if (!runsOutsideTransaction(change) || tx.begun) {
        this.begin(tx);
        if (tx.deferred.length > 0) await this.send(tx, 'select 1');
      }
      await applySchemaChange(this.exec, { ...this.ctx, source: this.state.source }, change);
      this.begin(tx);
      this.state.schemaChanges++;
      tx.catalog = new TargetCatalog({
        query: (sql, values) => this.exec.maintain((db) => db.query(sql, values)),
      });
    } else if (change.control === 'HEARTBEAT') {
      this.ctx.metrics.lagSeconds.set(Number(BigInt(Date.now()) * 1000n - change.tx.commitTs) / 1e6, {
        origin: this.state.source,
      });
    }
    if (!change.tx.last) return undefined;
    if (tx.pending.length > 0) await this.applyPending(tx);
    if (!tx.begun) {
      // A transaction with no rows (heartbeat, switchover marker, message) still moves the
      // origin's progress, so "the peer has applied up to LSN x" holds when idle too.
      this.begin(tx);
      tx.deferred.push(TAKE_XID);
    }
    if (tx.conflicts.length > 0) tx.deferred.push(this.conflictsInsert(tx.conflicts));
    // the writes still deferred, the conflict log and the commit: one round trip
    // (still open until the commit answers: a failure there is rolled back by handle())
    tx.deferred.push(this.commitSetup(commitLsn, tx.commitTs));
    await this.send(tx, 'commit');
    this.tx = undefined;
    this.state.applied = commitLsn;
    // what the shared catalog may have read meanwhile is the schema before this DDL
    if (tx.catalog !== undefined) this.ctx.catalog.invalidate();
    for (const [action, n] of tx.actions) this.ctx.metrics.rows.inc({ origin: this.state.source, action }, n);
    for (const x of tx.conflicts) this.ctx.metrics.conflicts.inc({ kind: x.kind, resolution: x.resolution });
    const m = this.ctx.metrics;
    m.transactions.inc({ origin: this.state.source });
    m.appliedLsn.set(Number(commitLsn), { origin: this.state.source });
    m.lagSeconds.set(Number(BigInt(Date.now()) * 1000n - tx.commitTs) / 1e6, { origin: this.state.source });
    return {
      commitLsn,
      commitTs: tx.commitTs,
      rows: tx.rows,
      conflicts: tx.conflicts,
      deadLetters: tx.deadLetters,
    };
  }

  private begin(tx: OpenTx): void {
    if (tx.begun) return;
    tx.deferred.push(...this.beginStatements(tx.commitLsn));
    tx.begun = true;
  }

  /** Sends the deferred statements and then `last` in one round trip; the result of `last`. */
  private async send<R extends object>(tx: OpenTx, last: string): Promise<{ rows: R[] }> {
    const parts = [...tx.deferred, last];
    tx.deferred = [];
    const results = await this.exec.send(parts);
    return results[results.length - 1]! as unknown as { rows: R[] };
  }

  /**
   * The rows pending in the open transaction, batch by batch. When no key comes twice among
   * them (most small transactions), every batch's lookup goes in one round trip and the writes
   * with the commit: two round trips for the transaction whatever tables it touches, and its
   * rows locked across one turn of this process instead of one per table.
   */
  private async applyPending(tx: OpenTx): Promise<void> {
    this.begin(tx);
    const changes = tx.pending;
    tx.pending = [];
    const { batches, keysRepeat, truncates } = splitBatches(expandKeyChanges(changes));
    const together =
      !keysRepeat && !truncates && this.isolating !== tx.commitLsn && !changes.some((c) => c.resync);
    if (together) await this.applyTogether(tx, batches);
    else
      for (const batch of batches) {
        if (batch[0]!.op === 'TRUNCATE') await this.truncate(tx, batch[0]!);
        else await this.applyBatch(tx, batch);
      }
    tx.rows += changes.length;
  }

  /** Batches without a key in common: all lookups in one round trip, then each decided and written. */
  private async applyTogether(tx: OpenTx, batches: RowChange[][]): Promise<void> {
    const prepared: Prepared[] = [];
    for (const batch of batches) {
      const p = await this.prepareBatch(tx, batch, false);
      if (p !== undefined) prepared.push(p);
    }
    if (prepared.length === 0) return;
    const parts = [...tx.deferred, ...prepared.map((p) => p.lookup)];
    tx.deferred = [];
    const results = await this.exec.send(parts);
    const answers = results.slice(results.length - prepared.length);
    for (const [i, p] of prepared.entries())
      await this.finishBatch(tx, p, (answers[i] as unknown as { rows: LookupRow[] }).rows);
  }

  private async truncate(tx: OpenTx, c: RowChange): Promise<void> {
    const t = await (tx.catalog ?? this.ctx.catalog).table(c.schema, c.table);
    if (t === undefined) {
      this.conflict(tx, c, 'target_table_missing', 'skip', null);
      return;
    }
    tx.deferred.push(`truncate ${t.sql}`);
  }

  /** One table, distinct keys: insert what is new, look up the rest, decide, and write. */
  private async applyBatch(tx: OpenTx, rows: RowChange[]): Promise<void> {
    const p = await this.prepareBatch(tx, rows, true);
    if (p === undefined) return;
    let looked: LookupRow[];
    if (this.isolating !== tx.commitLsn) looked = (await this.send<LookupRow>(tx, p.lookup)).rows;
    else {
      if (tx.deferred.length > 0) await this.send(tx, 'select 1');
      const a = await this.exec.underSavepoint('brabant_lookup', p.lookup);
      if (!a.ok) {
        // the keys themselves do not fit the target's types
        this.setAsideRows(tx, p.batch, a.error);
        return;
      }
      looked = a.result.rows as LookupRow[];
    }
    await this.finishBatch(tx, p, looked);
  }

  /**
   * A batch up to its lookup: what needs none (no such table, a missing key column, inserts into
   * a table without a key, and with `insertNew` the inserts of new keys, in a round trip of their
   * own) is done here; the lookup of the rest is returned, or undefined when nothing is left.
   */
  private async prepareBatch(
    tx: OpenTx,
    rows: RowChange[],
    insertNew: boolean,
  ): Promise<Prepared | undefined> {
    let batch = rows;
    const first = batch[0]!;
    const t = await (tx.catalog ?? this.ctx.catalog).table(first.schema, first.table);
    if (t === undefined) {
      for (const c of batch) {
        this.conflict(tx, c, 'target_table_missing', 'skip', null);
        tx.deadLetters.push({
          reason: `table ${first.schema}.${first.table} does not exist on ${this.ctx.localNode}`,
          change: c,
        });
      }
      return undefined;
    }
    // a row of an older shape, as its writer will hold it (under column_lww its absent columns
    // are simply not written by it)
    batch = batch.map((c) => {
      const renamed = withRenames(t.renames, c);
      return t.policy.rows === 'row_lww' ? withAddedColumns(t, renamed) : renamed;
    });
    const keyCols = keyColumns(t, batch[0]!);
    const missingKey = keyCols.filter((k) => !t.columns.has(k));
    if (missingKey.length > 0) {
      for (const c of batch)
        tx.deadLetters.push({
          reason: `key column(s) ${missingKey.join(', ')} missing in ${t.schema}.${t.name}`,
          change: c,
        });
      return undefined;
    }
    this.reportDrift(tx, t, first);
    const statements = this.exec.statements;
    const isolated = this.isolating === tx.commitLsn;
    if (keyCols.length === 0 || byWholeRow(t, keyCols)) {
      // no key (a table that replicates its inserts only), or found by the whole old row:
      // an insert is a row of its own (identical rows are legitimate), never a conflict
      const inserts = batch.filter((c) => c.op === 'INSERT');
      for (const w of plainInserts(t, inserts)) await this.write(tx, t, w, isolated);
      addAction(tx.actions, 'insert', inserts.length);
      batch = batch.filter((c) => c.op !== 'INSERT');
      if (batch.length === 0) return undefined;
      if (keyCols.length === 0) {
        for (const c of batch)
          tx.deadLetters.push({
            reason: `${t.schema}.${t.name} has no key to find the row of this ${c.op} by`,
            change: c,
          });
        return undefined;
      }
    }
    // resync rows are decided by their own versions, which a blind insert would not record
    const newRows =
      !insertNew || isolated || batch[0]!.resync ? undefined : insertNewStep(t, keyCols, batch, statements);
    if (newRows !== undefined) {
      const res = await this.send<{ ord: number }>(tx, newRows);
      const inserted = new Set(res.rows.map((r) => r.ord - 1));
      addAction(tx.actions, 'insert', inserted.size);
      batch = batch.filter((_, i) => !inserted.has(i));
      if (batch.length === 0) return undefined;
    }
    // the lookup locks the rows it finds
    return { t, keyCols, batch, lookup: lookupStep(t, keyCols, batch, statements) };
  }

  /** A looked-up batch: decided, its conflicts recorded, and its writes deferred (or guarded). */
  private async finishBatch(tx: OpenTx, p: Prepared, looked: LookupRow[]): Promise<void> {
    const { t, keyCols, batch } = p;
    const { decisions, conflicts } = decide(batch, looked, this.ctx.localNode, t, keyCols);
    if (byWholeRow(t, keyCols))
      for (const x of decisions) {
        // an updated row that is not here may be here changed: not inserted; nothing to tombstone
        if (x.d.action === 'insert' || x.d.action === 'tombstone') x.d = { ...x.d, action: 'skip' };
      }
    tx.conflicts.push(...conflicts);
    const isolated = this.isolating === tx.commitLsn;
    for (const w of writesFor(t, keyCols, decisions)) await this.write(tx, t, w, isolated);
    for (const x of decisions) addAction(tx.actions, x.d.action, 1);
  }

  /**
   * A write: with the next statement that answers, or, when it may fail on a row (another unique
   * key, a custom resolver, a transaction in isolation), under a savepoint in its own round trip.
   */
  private async write(tx: OpenTx, t: TargetTable, w: RowWrite, isolated: boolean): Promise<void> {
    if (!t.otherUniqueKeys && !isolated && !w.custom) {
      tx.deferred.push(executeWrite(t, w, this.exec.statements));
      return;
    }
    if (tx.deferred.length > 0) await this.send(tx, 'select 1');
    await writeGuarded(this.exec, t, w, isolated, {
      otherKey: (c, message) => {
        this.conflict(tx, c, 'multiple_unique_conflicts', 'skip', null);
        tx.deadLetters.push({ reason: `unique violation: ${message}`, change: c });
      },
      setAside: (c, reason) => {
        tx.deadLetters.push({ reason, change: c });
        addAction(tx.actions, 'dead_letter', 1);
      },
    });
  }

  /** Rows whose keys the target refuses: dead letters with the error policy's reason, or the error thrown. */
  private setAsideRows(tx: OpenTx, rows: RowChange[], err: Error): void {
    const d = directiveFor(err, { doing: 'applying' });
    if (d.kind !== 'deadletter') throw err;
    for (const c of rows) tx.deadLetters.push({ reason: d.reason, change: c });
    addAction(tx.actions, 'dead_letter', rows.length);
  }

  /** Column drift between this row and the target, logged and recorded once per column. */
  private reportDrift(tx: OpenTx, t: TargetTable, c: RowChange): void {
    for (const d of columnDrift(t, c, this.state.reportedDrift)) {
      this.state.reportedDrift.add(driftId(t, d.column));
      this.ctx.log.warn(
        { table: `${t.schema}.${t.name}`, column: d.column },
        d.kind === 'target_column_missing'
          ? 'a column of the source is missing on the target; its values are ignored'
          : 'a column of the target is missing in the source (a shape before the column was added): its rows get the value rows had when it was added',
      );
      this.conflict(tx, c, d.kind, 'skip', null);
    }
  }

  private conflict(
    tx: OpenTx,
    c: RowChange,
    kind: ConflictKind,
    resolution: Resolution,
    local: LookupRow | null,
  ): void {
    tx.conflicts.push(conflictRecord(c, kind, resolution, local, this.ctx.localNode));
  }
}
