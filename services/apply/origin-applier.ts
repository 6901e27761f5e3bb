import { createHash } from 'node:crypto';
/**
 * Applies one source node's stream to the local node (I/O shell around `resolve`): each source
 * transaction in one local transaction, inside the replication-origin session `brabant_<source>`
 * with the source's commit LSN and timestamp, so the origin's progress commits atomically with
 * the data and the rows carry the original commit time and origin (what last-writer-wins reads).
 * A large source transaction is applied in chunks inside one open local transaction.
 */
import type pg from 'pg';
import type { DecodedChange, Row, RowChange } from '../protocol/change-decoder.ts';
import { formatLsn, type Lsn, parseLsn, ZERO_LSN } from '../protocol/lsn.ts';
import { nodeOfOrigin, originName } from '../protocol/names.ts';
import { codecFromAvro } from '../protocol/pg-types.ts';
import { UNCHANGED } from '../protocol/table-schema.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { type FastTx, planFast } from './fast-plan.ts';
import {
  FAST_PATH_MISS_SQLSTATE,
  type FastStatement,
  literal,
  textArrayLiteral,
  XACT_SETUP,
} from './fast-sql.ts';
import type { ApplyMetrics } from './metrics.ts';
import { PreparedStatements } from './prepared-statements.ts';
import {
  type ConflictKind,
  type Decision,
  type LocalState,
  type Resolution,
  resolve,
  type Version,
} from './resolve.ts';
import {
  expandKeyChanges,
  isCollision,
  presentColumns,
  textOf,
  wholeTransactionAt,
} from './source-transactions.ts';
import {
  deleteSql,
  insertNewSql,
  insertSql,
  lookupSql,
  tombstoneSql,
  updateSql,
  verifySql,
} from './table-sql.ts';
import { quoteIdent, type TargetCatalog, type TargetTable } from './target-catalog.ts';

/** Session settings of an apply connection (as PostgreSQL's own apply workers run). */
export const APPLY_SESSION_OPTIONS =
  '-c session_replication_role=replica -c synchronous_commit=off -c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c standard_conforming_strings=on';

export interface ConflictRecord {
  kind: ConflictKind;
  resolution: Resolution;
  table: string;
  key: Record<string, string> | null;
  localRow: unknown;
  localTs: bigint | null;
  localNode: string | null;
  remoteRow: Record<string, string | null> | null;
  remoteTs: bigint;
  remoteNode: string;
  remoteCommitLsn: Lsn;
}

export interface DeadLetter {
  reason: string;
  change: RowChange;
}

export interface ApplierContext {
  localNode: string;
  catalog: TargetCatalog;
  log: Logger;
  metrics: ApplyMetrics;
  /** Rows of one source transaction applied per round trip; also the chunk size of large transactions. */
  chunkRows: number;
  /** Most source transactions applied together in one round trip by the fast path (1 = off). */
  groupTransactions: number;
}

/** A complete small source transaction planned for the resolve-ahead path. */
interface AheadTx {
  start: number;
  end: number;
  commitLsn: Lsn;
  commitTs: bigint;
  sourceRows: number;
  /** Its row changes (key changes split), each with its table and group-wide key. */
  rows: { c: RowChange; t: TargetTable; key: string }[];
}

const timestamptz = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });

interface OpenTx {
  commitLsn: Lsn;
  commitTs: bigint;
  lastIndex: number;
  begun: boolean;
  /** Statements of this local transaction not sent yet: they go with the next one that answers. */
  deferred: string[];
  pending: RowChange[];
  conflicts: ConflictRecord[];
  deadLetters: DeadLetter[];
  rows: number;
  /** Row changes handled per action; counted in the metrics when the transaction commits. */
  actions: Map<string, number>;
}

export interface TxOutcome {
  commitLsn: Lsn;
  commitTs: bigint;
  rows: number;
  conflicts: ConflictRecord[];
  deadLetters: DeadLetter[];
}

export class OriginApplier {
  readonly origin: string;
  private applied: Lsn = ZERO_LSN;
  private roident = 0;
  /** Source transactions still to resolve ahead before trying the fast path again. */
  private resolveAheadTxs = 0;
  /** Tables the next local transaction of this source transaction locks first (see applyWhole). */
  private lockTables: { commitLsn: Lsn; tables: string[] } | undefined;
  /** Most transactions the next fast-path group may hold (shrinks on misses, doubles back). */
  private fastLimit = Number.MAX_SAFE_INTEGER;
  private fastBackoff = 0;
  /** The statements of this connection's round trips, prepared once each. */
  private readonly statements: PreparedStatements;
  private tx: OpenTx | undefined;
  private readonly warnedColumns = new Set<string>();

  constructor(
    private readonly db: pg.Client,
    readonly source: string,
    private readonly ctx: ApplierContext,
  ) {
    this.origin = originName(source);
    this.statements = new PreparedStatements(db);
  }

  /** Last source commit LSN applied (the origin's progress). */
  get progress(): Lsn {
    return this.applied;
  }

  /** Whether a source transaction is under way (its first events seen, its last not yet). */
  get inTransaction(): boolean {
    return this.tx !== undefined;
  }

  /** Commit LSN of the source transaction under way, if any. */
  get openCommitLsn(): Lsn | undefined {
    return this.tx?.commitLsn;
  }

  async init(): Promise<void> {
    await this.db.query(
      `select pg_replication_origin_create($1) where not exists (select 1 from pg_replication_origin where roname = $1)`,
      [this.origin],
    );
    // Only one session can hold an origin: a second apply of this node is fenced by PostgreSQL.
    // The backend of an apply that was just killed may hold it a moment longer: wait a little.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.db.query('select pg_replication_origin_session_setup($1)', [this.origin]);
        break;
      } catch (err) {
        const msg = (err as Error).message;
        if (!/already active/.test(msg)) throw err;
        if (attempt >= 20) {
          throw new BrabantError(
            'FENCED',
            `replication origin ${this.origin} is in use by another session (${msg}): another apply for ${this.ctx.localNode} is running; stop it first`,
          );
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    const res = await this.db.query<{ p: string | null; id: number }>(
      'select pg_replication_origin_progress($1, true)::text as p, (select roident::int from pg_replication_origin where roname = $1) as id',
      [this.origin],
    );
    this.applied = res.rows[0]?.p ? parseLsn(res.rows[0].p) : ZERO_LSN;
    this.roident = res.rows[0]!.id;
  }

  /**
   * Feeds a run of this source's events, in stream order; resolves with the outcome of every
   * source transaction the run ended (committed). Complete small transactions go through the
   * fast path, many per round trip; the rest, and any transaction the fast path misses, one event
   * at a time through `handle`.
   */
  async handleMany(changes: DecodedChange[]): Promise<TxOutcome[]> {
    const outcomes: TxOutcome[] = [];
    let i = 0;
    while (i < changes.length) {
      if (this.tx === undefined && this.ctx.groupTransactions > 1) {
        if (this.resolveAheadTxs === 0) {
          const group = await planFast(changes, i, {
            applied: this.applied,
            limit: Math.min(this.ctx.groupTransactions, this.fastLimit),
            chunkRows: this.ctx.chunkRows,
            statements: this.statements,
            roident: this.roident,
            table: (c) => this.groupableTable(c),
          });
          if (group.txs.length > 0) {
            const done = await this.applyFast(group.txs);
            outcomes.push(...done);
            // A miss on the first transaction cost a round trip for nothing: after a run of such
            // misses (conflict-heavy traffic) the next few groups are resolved ahead at once.
            this.fastBackoff = done.length > 0 ? 0 : Math.min(Math.max(1, this.fastBackoff * 2), 64);
            this.resolveAheadTxs = this.fastBackoff;
            // PostgreSQL parses a whole string before running it: after a miss, send only as many
            // as went through last time, doubling while they all go through
            this.fastLimit =
              done.length === group.txs.length
                ? Math.min(this.ctx.groupTransactions, this.fastLimit * 2)
                : Math.max(1, done.length);
            if (done.length === group.txs.length) {
              i = group.next;
              continue;
            }
            i = group.txs[done.length]!.start; // the one it missed: resolved ahead below
          } else {
            i = group.next;
            if (i >= changes.length) break;
          }
        }
        let ahead = await this.planResolved(changes, i);
        if (ahead.txs.length > 0) {
          // Groups in a row: the next group's lookups go in the round trip that runs this one,
          // after its commits, so each group after the first costs one round trip, not two.
          let looked: Map<RowChange, LookupRow> | undefined;
          for (;;) {
            const more = this.resolveAheadTxs > ahead.txs.length && ahead.next < changes.length;
            const next = more ? await this.planResolved(changes, ahead.next) : undefined;
            const r = await this.applyResolved(ahead.txs, looked, next?.txs);
            outcomes.push(...r.outcomes);
            this.resolveAheadTxs = Math.max(0, this.resolveAheadTxs - ahead.txs.length);
            if (r.outcomes.length < ahead.txs.length) {
              // its local state changed under it (a local write meanwhile): the full path
              const missed = ahead.txs[r.outcomes.length]!;
              const o = await this.applyWhole(changes, missed.start, missed.end);
              if (o !== undefined) outcomes.push(o);
              i = missed.end;
              break;
            }
            i = ahead.next;
            if (next === undefined || next.txs.length === 0 || r.nextLookups === undefined) break;
            ahead = next;
            looked = r.nextLookups;
          }
          continue;
        }
        i = ahead.next;
        if (i >= changes.length) break;
      }
      const whole = this.tx === undefined ? wholeTransactionAt(changes, i) : undefined;
      if (whole !== undefined) {
        const o = await this.applyWhole(changes, i, whole.end);
        if (o !== undefined) outcomes.push(o);
        i = whole.end;
        continue;
      }
      const o = await this.handle(changes[i]!);
      if (o !== undefined) outcomes.push(o);
      i++;
    }
    return outcomes;
  }

  /**
   * The full path for a whole source transaction (events `start` to `end` of `changes`). A key
   * that was absent at its lookup is not locked, so a local transaction may insert it before
   * this one writes (a unique violation on the key), and local writers may deadlock with it:
   * the transaction is then applied again from its start, its new lookups seeing that write.
   * The last attempt first locks its tables against local writes (SHARE ROW EXCLUSIVE: local
   * writers wait for this one transaction), so writers that keep recreating the same keys
   * cannot hold apply back.
   */
  private async applyWhole(
    changes: DecodedChange[],
    start: number,
    end: number,
  ): Promise<TxOutcome | undefined> {
    for (let attempt = 1; ; attempt++) {
      if (attempt === COLLISION_ATTEMPTS) {
        const tables = new Set<string>();
        for (let j = start; j < end; j++) {
          const c = changes[j]!;
          if (c.kind === 'row') tables.add(`${quoteIdent(c.schema)}.${quoteIdent(c.table)}`);
        }
        this.lockTables = { commitLsn: changes[start]!.tx.commitLsn, tables: [...tables] };
        this.ctx.log.info(
          { source: this.source, commitLsn: formatLsn(changes[start]!.tx.commitLsn), attempts: attempt - 1 },
          'a source transaction keeps colliding with local writes; applying it with its tables locked',
        );
      }
      try {
        let outcome: TxOutcome | undefined;
        for (let j = start; j < end; j++) outcome = (await this.handle(changes[j]!)) ?? outcome;
        return outcome;
      } catch (err) {
        // handle() rolled the local transaction back
        if (!isCollision(err) || attempt >= COLLISION_ATTEMPTS) throw err;
        this.ctx.metrics.collisionRetries.inc({ origin: this.source });
        this.ctx.log.debug(
          {
            source: this.source,
            commitLsn: formatLsn(changes[start]!.tx.commitLsn),
            attempt,
            err: (err as Error).message,
          },
          'a source transaction collided with a concurrent local write; applying it again',
        );
      }
    }
  }

  /**
   * Complete small source transactions from `from` on for the resolve-ahead path: rows the full
   * path would resolve against the primary key, no key twice in the group (so no transaction of
   * the group sees another's writes), up to the group limits.
   */
  private async planResolved(
    changes: DecodedChange[],
    from: number,
  ): Promise<{ txs: AheadTx[]; next: number }> {
    const txs: AheadTx[] = [];
    const keys = new Set<string>();
    let i = from;
    let rows = 0;
    while (i < changes.length && txs.length < this.ctx.groupTransactions) {
      const first = changes[i]!;
      if (first.tx.commitLsn <= this.applied) {
        i++;
        continue;
      }
      const whole = wholeTransactionAt(changes, i);
      if (whole === undefined) break;
      const { end, rows: source } = whole;
      if (txs.length > 0 && rows + source.length > this.ctx.chunkRows) break;
      if (source.length > this.ctx.chunkRows) break;
      const planned: { c: RowChange; t: TargetTable; key: string }[] = [];
      let ok = true;
      for (const c of expandKeyChanges(source)) {
        const t = await this.groupableTable(c);
        const key = t && `${t.sql}\u0000${JSON.stringify(t.primaryKey.map((k) => c.key![k]))}`;
        if (t === undefined || key === undefined || keys.has(key) || planned.some((p) => p.key === key)) {
          ok = false;
          break;
        }
        planned.push({ c, t, key });
      }
      if (!ok) break;
      for (const p of planned) keys.add(p.key);
      txs.push({
        start: i,
        end,
        commitLsn: first.tx.commitLsn,
        commitTs: first.tx.commitTs,
        sourceRows: source.length,
        rows: planned,
      });
      rows += source.length;
      i = end;
    }
    return { txs, next: i };
  }

  /**
   * Resolve ahead: one round trip looks up the local state of every key of the group (unless
   * `looked` has it, from the previous group's round trip); the decisions are made here by
   * `resolve()` as in the full path; a second round trip runs every transaction, each first
   * checking (and locking) that its keys are still in the state looked up (`verifySql`), and
   * then looks up the keys of the `next` group. Resolves with the outcomes of those that
   * committed: all, or those before the first whose state changed meanwhile, which the caller
   * takes through the full path (the next group's lookups are then not made).
   */
  private async applyResolved(
    txs: AheadTx[],
    looked: Map<RowChange, LookupRow> | undefined,
    next: AheadTx[] | undefined,
  ): Promise<{ outcomes: TxOutcome[]; nextLookups?: Map<RowChange, LookupRow> }> {
    let state = looked;
    if (state === undefined) {
      const lookups = this.lookups(txs);
      if (lookups === undefined) state = new Map();
      else {
        await this.statements.prepareNew();
        // The script is a transaction that is rolled back, never committed: a commit in this
        // session (the lookup's row locks take an xid) could carry the origin's progress of a
        // transaction that did not commit (the origin setup of one that failed), which
        // runScript reads to count what committed.
        let res: pg.QueryResult<LookupRow>[];
        try {
          res = (await this.db.query(lookups.script)) as unknown as pg.QueryResult<LookupRow>[];
        } catch (err) {
          if ((err as { code?: string }).code === undefined) throw err; // the connection
          await this.db.query('rollback');
          // a deadlock with local writers (their delete trigger locks the tombstone after the
          // row, the lookups the other way round): nothing applied, the full path takes over
          if (!isCollision(err)) throw err;
          this.ctx.log.debug(
            { source: this.source, err: (err as Error).message },
            'resolve-ahead lookups collided with local writes',
          );
          return { outcomes: [] };
        }
        state = lookups.read(res.slice(1, 1 + lookups.count));
      }
    }
    const opened: OpenTx[] = [];
    const scripts: string[] = [];
    for (const x of txs) {
      const tx = newOpenTx(x.commitLsn, x.commitTs);
      this.begin(tx);
      if (x.rows.length === 0) tx.deferred.push('select txid_current()');
      // the state each decision rests on, checked and locked first
      for (const [t, cs] of byTable([x])) {
        tx.deferred.push(
          this.statements.execute(
            t,
            `full verify ${t.primaryKey.join('\u0000')}`,
            () => full(verifySql(t, t.primaryKey)),
            [
              ...t.primaryKey.map((k) => textArrayLiteral(cs.map((c) => c.key![k]!))),
              literal(`${t.schema}.${t.name}`),
              textArrayLiteral(cs.map((c) => state.get(c)!.row_xmin)),
              textArrayLiteral(cs.map((c) => state.get(c)!.tomb_xmin)),
            ],
          ),
        );
      }
      // consecutive changes of one table are one batch, as in the full path
      let batch: RowChange[] = [];
      let table: TargetTable | undefined;
      const flush = async () => {
        if (table === undefined || batch.length === 0) return;
        const decisions = this.decide(
          tx,
          batch,
          batch.map((c) => state.get(c)!),
        );
        await this.write(tx, table, table.primaryKey, decisions);
        batch = [];
      };
      for (const { c, t } of x.rows) {
        if (t !== table) await flush();
        table = t;
        batch.push(c);
      }
      await flush();
      tx.rows = x.sourceRows;
      if (tx.conflicts.length > 0) tx.deferred.push(this.conflictsInsert(tx.conflicts));
      tx.deferred.push('commit');
      scripts.push(tx.deferred.join(';\n'));
      tx.deferred = [];
      opened.push(tx);
    }
    // the next group's lookups, after this group's commits (rolled back, as above)
    const nextLookups = next === undefined || next.length === 0 ? undefined : this.lookups(next);
    if (nextLookups !== undefined) scripts.push(nextLookups.script);
    await this.statements.prepareNew();
    const run = await this.runScript(scripts.join(';\n'), txs);
    const committed = run.committed;
    const outcomes: TxOutcome[] = [];
    for (const tx of opened.slice(0, committed)) {
      this.applied = tx.commitLsn;
      this.countCommitted(tx);
      outcomes.push({
        commitLsn: tx.commitLsn,
        commitTs: tx.commitTs,
        rows: tx.rows,
        conflicts: tx.conflicts,
        deadLetters: tx.deadLetters,
      });
    }
    this.countTransactions(opened.slice(0, committed));
    if (nextLookups === undefined || run.results === undefined) return { outcomes };
    return { outcomes, nextLookups: nextLookups.read(run.results.slice(-1 - nextLookups.count, -1)) };
  }

  /**
   * The lookups of a resolve-ahead group (one statement per table) as a script in a transaction
   * that is rolled back (see applyResolved), and how to read their answers.
   */
  private lookups(txs: AheadTx[]):
    | {
        script: string;
        /** How many answers the script gives after its `begin`. */
        count: number;
        read: (results: pg.QueryResult<LookupRow>[]) => Map<RowChange, LookupRow>;
      }
    | undefined {
    const tables = [...byTable(txs)];
    if (tables.length === 0) return undefined;
    const sql = tables.map(([t, cs]) =>
      this.statements.execute(
        t,
        `full lookup ${t.primaryKey.join('\u0000')}\u0001`,
        () => full(lookupSql(t, t.primaryKey, [])),
        [
          ...t.primaryKey.map((k) => textArrayLiteral(cs.map((c) => c.key![k]!))),
          literal(`${t.schema}.${t.name}`),
        ],
      ),
    );
    return {
      script: `begin;\n${sql.join(';\n')};\nrollback`,
      count: sql.length,
      read: (results) => {
        const state = new Map<RowChange, LookupRow>();
        for (const [n, [, cs]] of tables.entries())
          for (const [k, c] of cs.entries()) state.set(c, results[n]!.rows[k]!);
        return state;
      },
    };
  }

  /**
   * Runs a script of local transactions (one per entry of `txs`, in order) in one round trip;
   * resolves with how many committed. A statement that fails (BR001: not in the expected state)
   * ends the script there: the transaction is rolled back, the origin's session progress tells
   * which committed before it.
   */
  private async runScript(
    script: string,
    txs: { commitLsn: Lsn }[],
  ): Promise<{ committed: number; results?: pg.QueryResult<LookupRow>[] }> {
    try {
      const res = (await this.db.query(script)) as unknown as
        | pg.QueryResult<LookupRow>[]
        | pg.QueryResult<LookupRow>;
      return { committed: txs.length, results: Array.isArray(res) ? res : [res] };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === undefined) throw err; // the connection, not a statement
      const res = (await this.db.query(
        'rollback; select pg_replication_origin_session_progress(false)::text as p',
      )) as unknown as pg.QueryResult<{ p: string | null }>[];
      const p = res[1]?.rows[0]?.p;
      const progress = p ? parseLsn(p) : ZERO_LSN;
      let committed = txs.findIndex((x) => x.commitLsn > progress);
      if (committed < 0) committed = txs.length;
      const missed = txs[committed];
      if (code === FAST_PATH_MISS_SQLSTATE) this.ctx.metrics.fastPathMisses.inc({ origin: this.source });
      else
        this.ctx.log.debug(
          {
            source: this.source,
            commitLsn: missed && formatLsn(missed.commitLsn),
            err: (err as Error).message,
          },
          'a grouped transaction failed on a statement; applying it through the full path',
        );
      return { committed };
    }
  }

  private countTransactions(txs: { commitLsn: Lsn; commitTs: bigint }[]): void {
    if (txs.length === 0) return;
    const m = this.ctx.metrics;
    const last = txs[txs.length - 1]!;
    m.transactions.inc({ origin: this.source }, txs.length);
    m.appliedLsn.set(Number(last.commitLsn), { origin: this.source });
    m.lagSeconds.set(Number(BigInt(Date.now()) * 1000n - last.commitTs) / 1e6, { origin: this.source });
  }

  /**
   * Runs the planned transactions in one round trip. Resolves with the outcomes of those that
   * committed: all of them, or those before the first one a statement missed (or failed), which
   * the caller then takes through the full path.
   */
  private async applyFast(txs: FastTx[]): Promise<TxOutcome[]> {
    await this.statements.prepareNew();
    const { committed } = await this.runScript(txs.map((x) => x.script).join('\n'), txs);
    const outcomes: TxOutcome[] = [];
    const m = this.ctx.metrics;
    for (const x of txs.slice(0, committed)) {
      this.applied = x.commitLsn;
      outcomes.push({
        commitLsn: x.commitLsn,
        commitTs: x.commitTs,
        rows: x.rows.insert + x.rows.update + x.rows.delete,
        conflicts: [],
        deadLetters: [],
      });
      for (const action of ['insert', 'update', 'delete'] as const)
        if (x.rows[action] > 0) m.rows.inc({ origin: this.source, action }, x.rows[action]);
    }
    this.countTransactions(txs.slice(0, committed));
    return outcomes;
  }

  /**
   * The table of a change the group paths can take (found by its primary key, no other unique
   * key, no old row sent, no column warning pending), else undefined: the full path takes it.
   */
  private async groupableTable(c: RowChange): Promise<TargetTable | undefined> {
    if (c.op === 'TRUNCATE' || c.before !== null || c.key === null) return undefined;
    if (c.op !== 'DELETE' && c.after === null) return undefined;
    const t = await this.ctx.catalog.table(c.schema, c.table);
    if (t === undefined || t.otherUniqueKeys || t.primaryKey.length === 0) return undefined;
    if (!t.primaryKey.every((k) => typeof c.key![k] === 'string')) return undefined;
    return this.columnsToWarn(t, c) ? undefined : t;
  }

  /** Whether `checkColumns` would still warn about this row's columns (the full path does that). */
  private columnsToWarn(t: TargetTable, c: RowChange): boolean {
    const row = c.after ?? c.before;
    if (row === null) return false;
    for (const col of Object.keys(row))
      if (!t.columns.has(col) && !this.warnedColumns.has(`${t.schema}.${t.name}.${col}`)) return true;
    for (const col of t.columns.keys())
      if (!(col in row) && !this.warnedColumns.has(`${t.schema}.${t.name}.${col}`)) return true;
    return false;
  }

  /**
   * Feeds one event of this source, in stream order. Resolves with the outcome when the event
   * ended a source transaction that was applied (committed), else undefined.
   */
  async handle(change: DecodedChange): Promise<TxOutcome | undefined> {
    try {
      return await this.handleNow(change);
    } catch (err) {
      // The local transaction is lost; the source transaction will be delivered again from its start.
      await this.rollback();
      throw err;
    }
  }

  private async handleNow(change: DecodedChange): Promise<TxOutcome | undefined> {
    const { commitLsn, index } = change.tx;
    if (commitLsn <= this.applied) return undefined; // applied before (redelivery after a restart)
    if (this.tx !== undefined && this.tx.commitLsn !== commitLsn) {
      // The source transaction before this one never ended in the stream (its node's slot was
      // recreated mid-transaction): its partial effects must not commit.
      this.ctx.log.error(
        { source: this.source, commitLsn: formatLsn(this.tx.commitLsn) },
        'source transaction ended without its last event; rolled back',
      );
      this.ctx.metrics.incompleteTransactions.inc({ origin: this.source });
      await this.rollback();
    }
    if (this.tx === undefined) this.tx = newOpenTx(commitLsn, change.tx.commitTs);
    const tx = this.tx;
    if (index <= tx.lastIndex) return undefined; // redelivered part of the open transaction
    tx.lastIndex = index;
    if (change.kind === 'row') {
      tx.pending.push(change);
      if (tx.pending.length >= this.ctx.chunkRows) await this.applyPending(tx);
    } else if (change.control === 'HEARTBEAT') {
      this.ctx.metrics.lagSeconds.set(Number(BigInt(Date.now()) * 1000n - change.tx.commitTs) / 1e6, {
        origin: this.source,
      });
    }
    if (!change.tx.last) return undefined;
    if (tx.pending.length > 0) await this.applyPending(tx);
    if (!tx.begun) {
      // A transaction with no rows (heartbeat, switchover marker, message) still moves the
      // origin's progress, so "the peer has applied up to LSN x" holds when idle too. Taking an
      // xid makes PostgreSQL write a commit record, which is what records origin progress.
      this.begin(tx);
      tx.deferred.push('select txid_current()');
    }
    if (tx.conflicts.length > 0) tx.deferred.push(this.conflictsInsert(tx.conflicts));
    // the writes still deferred, the conflict log and the commit: one round trip
    // (still open until the commit answers: a failure there is rolled back by handle())
    await this.send(tx, 'commit');
    this.tx = undefined;
    this.applied = commitLsn;
    this.countCommitted(tx);
    const m = this.ctx.metrics;
    m.transactions.inc({ origin: this.source });
    m.appliedLsn.set(Number(commitLsn), { origin: this.source });
    m.lagSeconds.set(Number(BigInt(Date.now()) * 1000n - tx.commitTs) / 1e6, { origin: this.source });
    return {
      commitLsn,
      commitTs: tx.commitTs,
      rows: tx.rows,
      conflicts: tx.conflicts,
      deadLetters: tx.deadLetters,
    };
  }

  /** Abandons an open local transaction (its source transaction will be delivered again). */
  async rollback(): Promise<void> {
    if (this.tx?.begun) await this.db.query('rollback').catch(() => {});
    this.tx = undefined;
  }

  /** Opens the local transaction with the origin's commit LSN and time (sent with the next statement). */
  private begin(tx: OpenTx): void {
    if (tx.begun) return;
    const setup = this.statements.execute(XACT_SETUP, 'setup', () => XACT_SETUP, [
      literal(formatLsn(tx.commitLsn)),
      literal(timestamptz.toText(tx.commitTs)),
    ]);
    tx.deferred.push('begin', setup);
    if (this.lockTables?.commitLsn === tx.commitLsn) {
      for (const t of this.lockTables.tables) tx.deferred.push(`lock table ${t} in share row exclusive mode`);
    }
    this.lockTables = undefined;
    tx.begun = true;
  }

  /**
   * Sends the statements deferred in `tx` and then `last` as one simple-protocol string, after
   * preparing the statements they execute; resolves with the result of `last`.
   */
  private async send<R extends pg.QueryResultRow>(tx: OpenTx, last: string): Promise<pg.QueryResult<R>> {
    await this.statements.prepareNew();
    const parts = [...tx.deferred, last];
    tx.deferred = [];
    const res = (await this.db.query(parts.join(';\n'))) as unknown as
      | pg.QueryResult<R>
      | pg.QueryResult<R>[];
    return Array.isArray(res) ? res[res.length - 1]! : res;
  }

  private async applyPending(tx: OpenTx): Promise<void> {
    this.begin(tx);
    const changes = tx.pending;
    tx.pending = [];
    let batch: RowChange[] = [];
    let keys = new Set<string>();
    const flush = async () => {
      if (batch.length > 0) await this.applyBatch(tx, batch);
      batch = [];
      keys = new Set();
    };
    for (const c of expandKeyChanges(changes)) {
      if (c.op === 'TRUNCATE') {
        await flush();
        await this.truncate(tx, c);
        continue;
      }
      const k = `${c.schema}.${c.table}\u0000${JSON.stringify(c.key)}`;
      if (batch.length > 0 && (batch[0]!.schema !== c.schema || batch[0]!.table !== c.table || keys.has(k)))
        await flush();
      batch.push(c);
      keys.add(k);
    }
    await flush();
    tx.rows += changes.length;
  }

  private async truncate(tx: OpenTx, c: RowChange): Promise<void> {
    const t = await this.ctx.catalog.table(c.schema, c.table);
    if (t === undefined) {
      this.conflict(tx, c, 'target_table_missing', 'skip', null);
      return;
    }
    tx.deferred.push(`truncate ${t.sql}`);
  }

  /** One table, distinct keys: look up, decide, and write with a few set-based statements. */
  private async applyBatch(tx: OpenTx, rows: RowChange[]): Promise<void> {
    let batch = rows;
    const first = batch[0]!;
    const t = await this.ctx.catalog.table(first.schema, first.table);
    if (t === undefined) {
      for (const c of batch) {
        this.conflict(tx, c, 'target_table_missing', 'skip', null);
        tx.deadLetters.push({
          reason: `table ${first.schema}.${first.table} does not exist on ${this.ctx.localNode}`,
          change: c,
        });
      }
      return;
    }
    // Find rows by the primary key when the stream's key holds it (REPLICA IDENTITY FULL sends
    // the whole old row as key), else by the stream's key; the delete trigger uses the same rule.
    const streamKey = Object.keys(first.key ?? {});
    const keyCols =
      t.primaryKey.length > 0 && t.primaryKey.every((k) => streamKey.includes(k)) ? t.primaryKey : streamKey;
    const missingKey = keyCols.filter((k) => !t.columns.has(k));
    if (missingKey.length > 0) {
      for (const c of batch)
        tx.deadLetters.push({
          reason: `key column(s) ${missingKey.join(', ')} missing in ${t.schema}.${t.name}`,
          change: c,
        });
      return;
    }
    this.checkColumns(tx, t, first);
    const qualified = `${t.schema}.${t.name}`;
    // Fast path, the common case of new rows: insert every key that neither exists nor has a
    // tombstone in one statement; only the keys it skipped go through lookup and resolution.
    if (!t.otherUniqueKeys && keyCols === t.primaryKey && batch.every((c) => c.op === 'INSERT')) {
      const cols = presentColumns(t, first.after!);
      if (
        keyCols.every((k) => cols.includes(k)) &&
        batch.every((c) => sameColumns(presentColumns(t, c.after!), cols))
      ) {
        const res = await this.send<{ ord: number }>(
          tx,
          this.statements.execute(
            t,
            `full insert-new ${cols.join('\u0000')}`,
            () => full(insertNewSql(t, keyCols, cols)),
            [
              ...cols.map((col) => textArrayLiteral(batch.map((c) => textOf(c.after![col])))),
              literal(qualified),
            ],
          ),
        );
        const inserted = new Set(res.rows.map((r) => r.ord - 1));
        addAction(tx, 'insert', inserted.size);
        batch = batch.filter((_, i) => !inserted.has(i));
        if (batch.length === 0) return;
      }
    }
    const keyParams = keyCols.map((k) => textArrayLiteral(batch.map((c) => c.key![k]!)));
    // REPLICA IDENTITY FULL sends the old row: compare it with the local one (update_differing)
    const withBefore = batch.find((c) => c.before !== null);
    const beforeCols = withBefore ? Object.keys(withBefore.before!).filter((col) => t.columns.has(col)) : [];
    const beforeParams = beforeCols.map((col) =>
      textArrayLiteral(batch.map((c) => (c.before === null ? null : textOf(c.before[col])))),
    );
    // the writes deferred so far, then the lookup (with row locks): one round trip
    const looked = await this.send<LookupRow>(
      tx,
      this.statements.execute(
        t,
        `full lookup ${keyCols.join('\u0000')}\u0001${beforeCols.join('\u0000')}`,
        () => full(lookupSql(t, keyCols, beforeCols)),
        [...keyParams, literal(qualified), ...beforeParams],
      ),
    );
    const decisions = this.decide(tx, batch, looked.rows);
    await this.write(tx, t, keyCols, decisions);
  }

  /** Resolves each change of a batch against the local state looked up for it (in order). */
  private decide(tx: OpenTx, batch: RowChange[], looked: LookupRow[]): { c: RowChange; d: Decision }[] {
    const decisions: { c: RowChange; d: Decision }[] = [];
    for (const [i, c] of batch.entries()) {
      const local = looked[i]!;
      const state = localState(local, this.ctx.localNode);
      const after = c.after;
      const d = resolve(state, {
        op: c.op as 'INSERT' | 'UPDATE' | 'DELETE',
        version: { ts: c.tx.commitTs, node: c.origin.node },
        complete: after !== null && Object.values(after).every((v) => v !== UNCHANGED),
        ...(c.before !== null && local.differs !== null ? { beforeMatchesLocal: !local.differs } : {}),
      });
      decisions.push({ c, d });
      if (d.conflict) this.conflict(tx, c, d.conflict.kind, d.conflict.resolution, local);
    }
    return decisions;
  }

  private async write(
    tx: OpenTx,
    t: TargetTable,
    keyCols: string[],
    decisions: { c: RowChange; d: Decision }[],
  ): Promise<void> {
    const qualified = `${t.schema}.${t.name}`;
    const of = (a: Decision['action']) => decisions.filter((x) => x.d.action === a).map((x) => x.c);
    const keys = (cs: RowChange[]) => keyCols.map((k) => cs.map((c) => c.key![k]!));
    const statements: { sql: string; params: unknown[]; changes: RowChange[] }[] = [];
    const deletes = of('delete');
    if (deletes.length > 0)
      statements.push({ sql: deleteSql(t, keyCols), params: keys(deletes), changes: deletes });
    const tombs = [...deletes, ...of('tombstone')];
    if (tombs.length > 0)
      statements.push({ sql: tombstoneSql(t, keyCols), params: [...keys(tombs), qualified], changes: [] });
    // updates, grouped by which columns they carry (unchanged TOAST values are left alone)
    const groups = new Map<string, RowChange[]>();
    for (const c of of('update')) {
      const cols = presentColumns(t, c.after!);
      const sig = cols.join('\u0000');
      groups.set(sig, [...(groups.get(sig) ?? []), c]);
    }
    for (const [sig, cs] of groups) {
      const cols = sig.split('\u0000');
      statements.push({
        sql: updateSql(t, keyCols, cols),
        params: [...keys(cs), ...cols.map((col) => cs.map((c) => textOf(c.after![col])))],
        changes: cs,
      });
    }
    const inserts = of('insert');
    if (inserts.length > 0) {
      const cols = presentColumns(t, inserts[0]!.after!);
      statements.push({
        sql: insertSql(t, cols),
        params: cols.map((col) => inserts.map((c) => textOf(c.after![col]))),
        changes: inserts,
      });
    }
    for (const s of statements) {
      // Only another unique key can make a write collide (the rows of this key are locked), so
      // only then pay for a savepoint (and a round trip) per statement; else the write goes
      // with the next statement that answers (the next lookup, or the commit).
      if (t.otherUniqueKeys) {
        if (tx.deferred.length > 0) await this.send(tx, 'select 1');
        await this.run(tx, t, s.sql, s.params, s.changes);
      } else {
        const args = s.params.map((p) =>
          Array.isArray(p) ? textArrayLiteral(p as (string | null)[]) : literal(String(p)),
        );
        tx.deferred.push(this.statements.execute(t, s.sql, () => full(s.sql), args));
      }
    }
    for (const x of decisions) addAction(tx, x.d.action, 1);
  }

  /**
   * Runs one set-based statement under a savepoint. A unique violation on another key
   * (multiple_unique_conflicts) sends that row to the dead-letter topic and applies the others.
   */
  private async run(
    tx: OpenTx,
    t: TargetTable,
    sql: string,
    params: unknown[],
    changes: RowChange[],
  ): Promise<void> {
    // a violation of the key itself is a concurrent local insert (see applyWhole), not another key
    const otherKey = (err: unknown) =>
      (err as { code?: string }).code === '23505' &&
      (err as { constraint?: string }).constraint !== t.primaryKeyIndex;
    await this.db.query('savepoint brabant_stmt');
    try {
      await this.db.query(prepared(sql, params));
      await this.db.query('release savepoint brabant_stmt');
      return;
    } catch (err) {
      await this.db.query('rollback to savepoint brabant_stmt');
      if (!otherKey(err) || changes.length === 0) throw err;
    }
    // one row at a time, to find the row(s) that collide
    for (let i = 0; i < changes.length; i++) {
      const one = params.map((p) => (Array.isArray(p) ? [p[i]] : p));
      await this.db.query('savepoint brabant_row');
      try {
        await this.db.query(sql, one);
        await this.db.query('release savepoint brabant_row');
      } catch (err) {
        await this.db.query('rollback to savepoint brabant_row');
        if (!otherKey(err)) throw err;
        const c = changes[i]!;
        this.conflict(tx, c, 'multiple_unique_conflicts', 'skip', null);
        tx.deadLetters.push({ reason: `unique violation: ${(err as Error).message}`, change: c });
      }
    }
    await this.db.query('release savepoint brabant_stmt').catch(() => {});
  }

  private checkColumns(tx: OpenTx, t: TargetTable, c: RowChange): void {
    const row = c.after ?? c.before;
    if (row === null) return;
    const source = Object.keys(row);
    for (const col of source) {
      if (!t.columns.has(col) && !this.warnedColumns.has(`${t.schema}.${t.name}.${col}`)) {
        this.warnedColumns.add(`${t.schema}.${t.name}.${col}`);
        this.ctx.log.warn(
          { table: `${t.schema}.${t.name}`, column: col },
          'source column missing on the target; its values are ignored',
        );
        this.conflict(tx, c, 'source_column_missing', 'skip', null);
      }
    }
    for (const col of t.columns.keys()) {
      if (!source.includes(col) && !this.warnedColumns.has(`${t.schema}.${t.name}.${col}`)) {
        this.warnedColumns.add(`${t.schema}.${t.name}.${col}`);
        this.ctx.log.warn(
          { table: `${t.schema}.${t.name}`, column: col },
          'target column missing in the source; left to its default',
        );
        this.conflict(tx, c, 'target_column_missing', 'skip', null);
      }
    }
  }

  private conflict(
    tx: OpenTx,
    c: RowChange,
    kind: ConflictKind,
    resolution: Resolution,
    local: LookupRow | null,
  ): void {
    const localVersion =
      local === null
        ? null
        : versionOf(
            local.found ? local.row_ts : local.tomb_ts,
            local.found ? local.row_origin : local.tomb_origin,
            this.ctx.localNode,
          );
    tx.conflicts.push({
      kind,
      resolution,
      table: `${c.schema}.${c.table}`,
      key: c.key,
      localRow: local?.local_row ?? null,
      localTs: localVersion?.ts ?? null,
      localNode: local !== null && (local.found || local.tombstone) ? (localVersion?.node ?? null) : null,
      remoteRow: plainRow(c.after ?? c.before),
      remoteTs: c.tx.commitTs,
      remoteNode: c.origin.node,
      remoteCommitLsn: c.tx.commitLsn,
    });
  }

  /** The conflict log of a transaction as one EXECUTE of a prepared insert (it goes with the commit). */
  private conflictsInsert(conflicts: ConflictRecord[]): string {
    return this.statements.execute(CONFLICTS_INSERT, 'conflicts', () => CONFLICTS_INSERT, [
      literal(JSON.stringify(conflictsJson(conflicts))),
    ]);
  }

  /** The metrics of a transaction that committed (counted only then: a retried one counts once). */
  private countCommitted(tx: OpenTx): void {
    const m = this.ctx.metrics;
    for (const [action, n] of tx.actions) m.rows.inc({ origin: this.source, action }, n);
    for (const x of tx.conflicts) m.conflicts.inc({ kind: x.kind, resolution: x.resolution });
  }
}

/** The conflict log rows as jsonb for CONFLICTS_INSERT. */
function conflictsJson(conflicts: ConflictRecord[]) {
  return conflicts.map((c) => ({
    kind: c.kind,
    resolution: c.resolution,
    table_name: c.table,
    key: c.key,
    local_row: c.localRow,
    local_commit_ts: c.localTs === null ? null : timestamptz.toText(c.localTs),
    local_node: c.localNode,
    remote_row: c.remoteRow,
    remote_commit_ts: timestamptz.toText(c.remoteTs),
    remote_node: c.remoteNode,
    remote_commit_lsn: formatLsn(c.remoteCommitLsn),
  }));
}

/** Appends conflict records ($1: a jsonb array of conflictsJson) to brabant.conflicts. */
const CONFLICTS_INSERT: FastStatement = {
  sql: `insert into brabant.conflicts (kind, resolution, table_name, key, local_row, local_commit_ts, local_node, remote_row, remote_commit_ts, remote_node, remote_commit_lsn)
       select kind, resolution, table_name, key, local_row, local_commit_ts, local_node, remote_row, remote_commit_ts, remote_node, remote_commit_lsn::pg_lsn
         from jsonb_to_recordset($1) as x(kind text, resolution text, table_name text, key jsonb, local_row jsonb, local_commit_ts timestamptz,
              local_node text, remote_row jsonb, remote_commit_ts timestamptz, remote_node text, remote_commit_lsn text)`,
  paramTypes: ['jsonb'],
};

/** A full-path statement (table-sql.ts) to prepare: its SQL casts every parameter itself. */
function full(sql: string): FastStatement {
  return { sql, paramTypes: [] };
}

/** The row changes of resolve-ahead transactions by table, in order of first appearance. */
function byTable(txs: AheadTx[]): Map<TargetTable, RowChange[]> {
  const tables = new Map<TargetTable, RowChange[]>();
  for (const x of txs)
    for (const { c, t } of x.rows) {
      const list = tables.get(t);
      if (list === undefined) tables.set(t, [c]);
      else list.push(c);
    }
  return tables;
}

/** How many times a source transaction is applied before a collision with local writes is an error. */
const COLLISION_ATTEMPTS = 5;

function newOpenTx(commitLsn: Lsn, commitTs: bigint): OpenTx {
  return {
    commitLsn,
    commitTs,
    lastIndex: -1,
    begun: false,
    deferred: [],
    pending: [],
    conflicts: [],
    deadLetters: [],
    rows: 0,
    actions: new Map(),
  };
}

/** Adds `n` row changes handled with `action` to a transaction's count. */
function addAction(tx: OpenTx, action: string, n: number): void {
  if (n > 0) tx.actions.set(action, (tx.actions.get(action) ?? 0) + n);
}

interface LookupRow {
  ord: number;
  /** Version tokens of what was looked up: the row's and the tombstone's xmin (text). */
  row_xmin: string | null;
  tomb_xmin: string | null;
  local_row: Record<string, unknown> | null;
  row_ts: string | null;
  row_origin: string | null;
  found: boolean;
  tomb_ts: string | null;
  tomb_origin: string | null;
  tombstone: boolean;
  differs: boolean | null;
}

/**
 * A named prepared statement: the SQL of a table version and batch shape is the same for every
 * batch (rows travel as array parameters), so each connection parses and plans it once.
 */
function prepared(text: string, values: unknown[]): { name: string; text: string; values: unknown[] } {
  return { name: `brabant_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`, text, values };
}

/** A version from (unix micros text, origin name): no origin = this node; no time = unknown. */
function versionOf(ts: string | null, origin: string | null, localNode: string): Version | null {
  if (ts === null) return null;
  const node = origin === null ? localNode : (nodeOfOrigin(origin) ?? origin);
  return { ts: BigInt(ts), node };
}

function localState(r: LookupRow, localNode: string): LocalState {
  if (r.found) return { kind: 'row', version: versionOf(r.row_ts, r.row_origin, localNode) };
  if (r.tombstone) {
    // a tombstone whose commit time is unknown (frozen) is the oldest possible delete
    return {
      kind: 'absent',
      tombstone: versionOf(r.tomb_ts, r.tomb_origin, localNode) ?? { ts: -(2n ** 63n), node: '' },
    };
  }
  return { kind: 'absent', tombstone: null };
}

function sameColumns(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function plainRow(row: Row | null): Record<string, string | null> | null {
  if (row === null) return null;
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => [k, v === UNCHANGED ? '(unchanged toast)' : v]),
  );
}
