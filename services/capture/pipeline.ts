import type { Origin } from '../protocol/envelope.ts';
import { decodePosition } from '../protocol/headers.ts';
import type { Lsn, StreamPosition } from '../protocol/lsn.ts';
import { nodeOfOrigin } from '../protocol/names.ts';
import {
  type ChunkEntry,
  type HighWatermark,
  parseWatermark,
  RESYNC_HIGH_PREFIX,
  type ResyncMark,
} from '../protocol/resync.ts';
import type { TableSchema } from '../protocol/table-schema.ts';
import { DEAD_LETTER_TOPIC } from '../protocol/topics.ts';
import { BrabantError, type ErrorCode } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import {
  type AssembledEvent,
  Assembler,
  type Output,
  type PausedTable,
  type TableVersion,
} from './assembler.ts';
import type { EventSink, OutMessage } from './kafka-sink.ts';
import type { CaptureMetrics } from './metrics.ts';
import type { PgoutputMessage, RelationMessage } from './pgoutput/messages.ts';
import { RecordEncoder } from './record-encoder.ts';
import type { Rejection } from './rejects.ts';
import { ResyncWindows } from './resync-window.ts';

export interface BatchLimits {
  maxEvents: number;
  maxBytes: number;
  maxAgeMs: number;
  /** Largest single message the topic accepts (max.message.bytes); larger events are split. */
  maxMessageBytes: number;
}

export interface PipelineDeps {
  origin: Origin;
  topic: string;
  partition: number;
  sink: EventSink;
  /** Registers a table version's schema (or the control schema) and returns its id. */
  registerSchema(subject: string, schema: object): Promise<number>;
  /** Builds the table version of a Relation message (needs the catalog for type names). */
  describeRelation(msg: RelationMessage): Promise<TableSchema>;
  /** Called with the end LSN of source transactions once everything up to them is in Kafka. */
  onDurable(endLsn: Lsn): void;
  limits: BatchLimits;
  skipThrough?: StreamPosition;
  log: Logger;
  metrics: CaptureMetrics;
  now?: () => number;
}

export const BRABANT_SCHEMA = 'brabant';

/** How long (in the stream's commit time) a resync window waits for its high watermark. */
const RESYNC_WINDOW_MAX_MICROS = 60_000_000n;

export class CapturePipeline {
  private readonly assembler: Assembler;
  private readonly tables = new Map<number, TableVersion>();
  private readonly ignored = new Set<number>();
  private readonly schemaIds = new Map<string, number>();
  private readonly encoder: RecordEncoder;
  private batch: OutMessage[] = [];
  private batchBytes = 0;
  private batchStartedAt = 0;
  /** End LSN of the last source commit whose events are all in the batch or already in Kafka. */
  private batchDurableLsn: Lsn | undefined;
  /** The batch being committed to Kafka while the next one fills (at most one at a time). */
  private inflight: Promise<void> | undefined;
  private inflightEvents = 0;
  private failed: unknown;
  /** End LSN of a source commit that ended while the batch was empty and a commit in flight. */
  private durableAfterInflight: Lsn | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly out: Output[] = [];
  private readonly now: () => number;
  private readonly windows = new ResyncWindows(RESYNC_WINDOW_MAX_MICROS);

  constructor(private readonly deps: PipelineDeps) {
    this.now = deps.now ?? Date.now;
    this.encoder = new RecordEncoder(deps, this.schemaIds, (table) => this.isPausedTable(table));
    this.assembler = new Assembler({
      tables: this.tables,
      ignored: this.ignored,
      windows: this.windows,
      ...(deps.skipThrough ? { skipThrough: deps.skipThrough } : {}),
    });
  }

  /** Feeds one decoded message; resolves once it is batched (and the batch flushed if full). */
  handle(msg: PgoutputMessage): Promise<void> {
    return this.serial(() => this.handleNow(msg));
  }

  /**
   * Flushes the batch if it is older than maxAgeMs (call from a timer), and waits for its
   * commit; throws when a commit (this one or one still in flight) failed.
   */
  tick(): Promise<void> {
    return this.serial(async () => {
      if (this.batch.length > 0 && this.now() - this.batchStartedAt >= this.deps.limits.maxAgeMs)
        await this.flushNow();
      await this.settle();
    });
  }

  /** Flushes whatever is batched and waits until Kafka holds it all (graceful stop). */
  flush(): Promise<void> {
    return this.serial(async () => {
      await this.flushNow();
      await this.settle();
    });
  }

  get pendingEvents(): number {
    return this.batch.length + this.inflightEvents;
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn);
    // Keep the chain alive after a failure; the caller of the failed call sees the error.
    this.chain = next.catch(() => {});
    return next;
  }

  private async handleNow(msg: PgoutputMessage): Promise<void> {
    if (msg.tag === 'relation') return this.relation(msg);
    if (msg.tag === 'undecodable' && msg.kind === 'R' && msg.relationOid !== undefined) {
      this.pause(msg.relationOid, undefined, undefined, {
        code: 'UNDECODABLE',
        reason: `the Relation message of relation oid ${msg.relationOid} is undecodable (${msg.reason})`,
        fix: 'report it with the log; the table resumes with its next Relation message (after a DDL or a capture restart)',
      });
      return;
    }
    this.out.length = 0;
    if (msg.tag === 'message' && msg.transactional && msg.prefix === RESYNC_HIGH_PREFIX)
      await this.resyncHigh(msg.prefix, msg.content);
    else this.assembler.handle(msg, this.out);
    for (const o of this.out) {
      if (o.type === 'event') this.add(await this.encoder.encode(o.event), o.event);
      else {
        if (o.skipped === 'origin') this.deps.metrics.skippedTransactions.inc({ reason: 'origin' });
        this.deps.metrics.transactions.inc();
        for (const w of o.abandoned)
          this.deps.log.warn(
            { resync: w.resync, chunk: w.chunk, table: `${w.schema}.${w.name}` },
            'a resync chunk’s high watermark did not come within a minute of its low one: no longer waited for (brabant resync goes on from its last chunk)',
          );
        // while a resync window is open, not past its low watermark (resync-window.ts)
        if (this.batch.length > 0) this.batchDurableLsn = o.confirmable;
        else if (this.inflight !== undefined) this.durableAfterInflight = o.confirmable;
        else this.deps.onDurable(o.confirmable);
      }
    }
    const l = this.deps.limits;
    if (this.batch.length >= l.maxEvents || this.batchBytes >= l.maxBytes) await this.flushNow();
  }

  /**
   * A resync's high watermark: its rows become events of the table version it read them in
   * (built and registered like a Relation message's), each with its original version; what the
   * log changed since the low watermark is dropped (the assembler and resync-window.ts).
   */
  private async resyncHigh(prefix: string, content: Buffer): Promise<void> {
    let w: HighWatermark;
    let table: TableSchema;
    try {
      const parsed = parseWatermark(prefix, content);
      if (parsed.type !== 'high') throw new BrabantError('UNDECODABLE', 'not a high watermark');
      w = parsed;
      table = await this.deps.describeRelation({
        tag: 'relation',
        oid: 0,
        schema: w.schema,
        name: w.name,
        replicaIdentity: 'default',
        columns: w.columns.map((c) => ({
          name: c.name,
          isKey: c.key,
          typeOid: c.typeOid,
          typeMod: c.typeMod,
        })),
      });
      if (!this.schemaIds.has(table.fingerprint)) {
        const id = await this.deps.registerSchema(`${this.deps.topic}-${table.fullName}`, table.schema);
        this.schemaIds.set(table.fingerprint, id);
      }
    } catch (err) {
      if (!(err instanceof BrabantError) || err.retriable) throw err;
      this.assembler.rejectMessage(
        prefix,
        content,
        {
          code: err.code,
          reason: `a resync chunk cannot be sent: ${err.message}`,
          fix: 'run brabant resync again for the table (it re-reads the chunk); report the error with this dead letter',
        },
        this.out,
      );
      return;
    }
    const node = this.deps.origin.node;
    const mark = ([ts, origin]: ChunkEntry): ResyncMark => ({
      id: w.resync,
      versionTs: ts === null ? null : BigInt(ts),
      // no origin: the row was written on this node
      versionNode: origin === null ? node : (nodeOfOrigin(origin) ?? origin),
    });
    const { sent, dropped } = this.assembler.resyncHigh(w, table, mark, this.out);
    const kind = w.kind === 'rows' ? 'row' : 'tombstone';
    this.deps.metrics.resyncRows.inc({ kind, outcome: 'sent' }, sent);
    this.deps.metrics.resyncRows.inc({ kind, outcome: 'dropped' }, dropped);
  }

  /** A new table version: build and register it, or pause the table when that cannot succeed. */
  private async relation(msg: RelationMessage): Promise<void> {
    // Brabant's own tables (tombstones, conflict log) are per node: never replicated.
    if (msg.schema === BRABANT_SCHEMA) {
      this.ignored.add(msg.oid);
      return;
    }
    this.ignored.delete(msg.oid);
    const qualified = `${msg.schema}.${msg.name}`;
    let table: TableSchema;
    try {
      table = await this.deps.describeRelation(msg);
      if (!this.schemaIds.has(table.fingerprint)) {
        const id = await this.deps.registerSchema(`${this.deps.topic}-${table.fullName}`, table.schema);
        this.schemaIds.set(table.fingerprint, id);
        this.deps.log.info(
          { table: qualified, schemaId: id, version: table.fingerprint },
          'table version registered',
        );
      }
    } catch (err) {
      // Retrying can mend an unreachable registry or node: the session restarts, nothing moves.
      if (err instanceof BrabantError && err.retriable) throw err;
      if (!(err instanceof BrabantError)) throw err;
      this.pause(msg.oid, msg, qualified, {
        code: err.code,
        reason: `table ${qualified}: ${err.message}`,
        fix:
          TABLE_FIXES[err.code] ??
          'fix the cause named here; the table resumes with its next Relation message',
      });
      return;
    }
    if (this.paused.delete(msg.oid)) {
      this.deps.metrics.pausedTables.set(0, { table: qualified });
      this.deps.log.warn({ table: qualified }, 'table resumed: its changes are captured again');
    }
    if (table.keyFields.length === 0)
      this.deps.log.warn(
        { table: qualified },
        `table ${qualified} has no replica identity: only its inserts and truncates are captured; ` +
          `to capture its updates and deletes too, add a primary key or run ALTER TABLE ${quoteQualified(msg)} REPLICA IDENTITY FULL`,
      );
    this.tables.set(msg.oid, table);
  }

  private readonly paused = new Set<number>();

  private pause(
    oid: number,
    msg: RelationMessage | undefined,
    qualified: string | undefined,
    r: Rejection,
  ): void {
    const table = qualified ?? (msg ? `${msg.schema}.${msg.name}` : `relation ${oid}`);
    const paused: PausedTable = {
      paused: true,
      schema: msg?.schema ?? '',
      name: msg?.name ?? `relation ${oid}`,
      columns: msg?.columns.map((c) => c.name),
      rejection: r,
    };
    this.tables.set(oid, paused);
    this.paused.add(oid);
    this.deps.metrics.pausedTables.set(1, { table });
    this.deps.log.error(
      { table, code: r.code, reason: r.reason, fix: r.fix, deadLetterTopic: DEAD_LETTER_TOPIC },
      `table ${table} is paused: its changes go to ${DEAD_LETTER_TOPIC} until it can be captured again; ${r.fix}`,
    );
  }

  private add(messages: OutMessage[], e: AssembledEvent): void {
    if (this.batch.length === 0) this.batchStartedAt = this.now();
    let size = 0;
    for (const m of messages) {
      this.batch.push(m);
      size += (m.value as Buffer).length;
    }
    this.batchBytes += size;
    const kind =
      e.kind === 'table' ? e.op.toLowerCase() : e.kind === 'control' ? e.control.toLowerCase() : 'rejected';
    this.deps.metrics.events.inc({ kind });
    this.deps.metrics.bytes.inc({}, size);
  }

  /**
   * Hands the batch to Kafka and returns without waiting for the commit, so the next batch is
   * decoded and encoded while this one commits (one Kafka transaction at a time: a batch full
   * while the one before is still in flight waits for it first). Its positions are confirmed to
   * the slot only once its commit answered; a failed commit is thrown by the next flush, tick
   * or full batch, and the session starts again from the slot's confirmed position.
   */
  private async flushNow(): Promise<void> {
    await this.settle();
    if (this.batch.length === 0) return;
    const messages = this.batch;
    const bytes = this.batchBytes;
    const durable = this.batchDurableLsn;
    this.batch = [];
    this.batchBytes = 0;
    this.batchDurableLsn = undefined;
    this.inflightEvents = messages.length;
    const commit: Promise<void> = this.commit(messages, bytes, durable).then(
      () => this.landed(commit),
      (err: unknown) => {
        // back in front of what came since, for the retry (in practice the session restarts)
        this.batch = [...messages, ...this.batch];
        this.batchBytes += bytes;
        this.batchDurableLsn ??= this.durableAfterInflight ?? durable;
        this.durableAfterInflight = undefined;
        this.failed = err;
        this.landed(commit);
      },
    );
    this.inflight = commit;
  }

  private landed(commit: Promise<void>): void {
    if (this.inflight !== commit) return;
    this.inflight = undefined;
    this.inflightEvents = 0;
  }

  /** Waits for the commit in flight, if any; throws the error of a commit that failed (once). */
  private async settle(): Promise<void> {
    if (this.inflight !== undefined) await this.inflight;
    const err = this.failed;
    this.failed = undefined;
    if (err !== undefined) throw err;
  }

  private async commit(messages: OutMessage[], bytes: number, durable: Lsn | undefined): Promise<void> {
    const started = this.now();
    await this.deps.sink.commitBatch(messages);
    // Only now, with the Kafka transaction committed, may the slot move.
    const m = this.deps.metrics;
    m.batches.inc();
    m.batchEvents.observe(messages.length);
    m.batchBytes.observe(bytes);
    m.commitSeconds.observe((this.now() - started) / 1000);
    const last = decodePosition(messages[messages.length - 1]!.headers as Record<string, string>);
    if (last !== undefined) m.lastCommittedLsn.set(Number(last.commitLsn));
    if (durable !== undefined) this.deps.onDurable(durable);
    // transactions that ended (with no events of their own) after this batch and before the next
    const after = this.durableAfterInflight;
    this.durableAfterInflight = undefined;
    if (after !== undefined) this.deps.onDurable(after);
  }

  private isPausedTable(table: string): boolean {
    for (const oid of this.paused) {
      const t = this.tables.get(oid);
      if (t !== undefined && 'paused' in t && `${t.schema}.${t.name}` === table) return true;
    }
    return false;
  }
}

/** What to do about a table whose version cannot be built or registered, by error code. */
const TABLE_FIXES: Partial<Record<ErrorCode, string>> = {
  SCHEMA_INCOMPATIBLE:
    "the registry's compatibility rule refuses the table's new version: make the change compatible (e.g. int to bigint, " +
    'not int to text; the table resumes with that DDL), or relax the rule of its subject and restart capture; its ' +
    'changes meanwhile are in the dead-letter topic',
  CATALOG_MISMATCH:
    'the catalog no longer holds what the table version refers to (e.g. a type dropped since): its changes meanwhile are ' +
    'in the dead-letter topic; repair the table on the peers from them',
  VALUE_UNREPRESENTABLE:
    'a column type cannot be mapped: report it with the log; its changes are in the dead-letter topic',
};

function quoteQualified(msg: RelationMessage): string {
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return `${q(msg.schema)}.${q(msg.name)}`;
}
