/**
 * The capture pipeline between the decoded stream and Kafka: assembles events, encodes them
 * (Avro, Confluent framing), batches them by count, bytes and age, commits each batch in one
 * Kafka transaction, and only then reports the end LSN of the last source transaction wholly in
 * that batch as durable. It never reports a received but unproduced LSN. Calls are serialized.
 */
import type { Message } from 'kafkajs';
import { type AvroType, avroType } from '../protocol/avro.ts';
import { encodeControlRecord, encodeTableRecord } from '../protocol/change-encoder.ts';
import { controlSchema, ENVELOPE_VERSION, type Origin } from '../protocol/envelope.ts';
import { decodePosition, encodeHeaders } from '../protocol/headers.ts';
import type { Lsn, StreamPosition } from '../protocol/lsn.ts';
import type { TableSchema } from '../protocol/table-schema.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { type AssembledEvent, Assembler, type Output } from './assembler.ts';
import type { EventSink } from './kafka-sink.ts';
import type { CaptureMetrics } from './metrics.ts';
import type { PgoutputMessage, RelationMessage } from './pgoutput/messages.ts';

export interface BatchLimits {
  maxEvents: number;
  maxBytes: number;
  maxAgeMs: number;
  /** Largest single message the topic accepts (max.message.bytes). */
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

/** Kafka's per-record overhead beyond key and value, with a margin. */
const RECORD_OVERHEAD = 256;

export class CapturePipeline {
  private readonly assembler: Assembler;
  private readonly tables = new Map<number, TableSchema>();
  private readonly ignored = new Set<number>();
  private readonly schemaIds = new Map<string, number>();
  private control: { id: number; type: AvroType } | undefined;
  private batch: Message[] = [];
  private batchBytes = 0;
  private batchStartedAt = 0;
  /** End LSN of the last source commit whose events are all in the batch or already in Kafka. */
  private batchDurableLsn: Lsn | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly out: Output[] = [];
  private readonly now: () => number;

  constructor(private readonly deps: PipelineDeps) {
    this.now = deps.now ?? Date.now;
    this.assembler = new Assembler({
      tables: this.tables,
      ignored: this.ignored,
      ...(deps.skipThrough ? { skipThrough: deps.skipThrough } : {}),
    });
  }

  /** Feeds one decoded message; resolves once it is batched (and the batch flushed if full). */
  handle(msg: PgoutputMessage): Promise<void> {
    return this.serial(() => this.handleNow(msg));
  }

  /** Flushes the batch if it is older than maxAgeMs (call from a timer). */
  tick(): Promise<void> {
    return this.serial(async () => {
      if (this.batch.length > 0 && this.now() - this.batchStartedAt >= this.deps.limits.maxAgeMs)
        await this.flushNow();
    });
  }

  /** Flushes whatever is batched (graceful stop). */
  flush(): Promise<void> {
    return this.serial(() => this.flushNow());
  }

  get pendingEvents(): number {
    return this.batch.length;
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn);
    // Keep the chain alive after a failure; the caller of the failed call sees the error.
    this.chain = next.catch(() => {});
    return next;
  }

  private async handleNow(msg: PgoutputMessage): Promise<void> {
    if (msg.tag === 'relation') {
      // Brabant's own tables (tombstones, conflict log) are per node: never replicated.
      if (msg.schema === BRABANT_SCHEMA) {
        this.ignored.add(msg.oid);
        return;
      }
      this.ignored.delete(msg.oid);
      const table = await this.deps.describeRelation(msg);
      if (!this.schemaIds.has(table.fingerprint)) {
        const id = await this.deps.registerSchema(`${this.deps.topic}-${table.fullName}`, table.schema);
        this.schemaIds.set(table.fingerprint, id);
        this.deps.log.info(
          { table: `${msg.schema}.${msg.name}`, schemaId: id, version: table.fingerprint },
          'table version registered',
        );
      }
      this.tables.set(msg.oid, table);
      return;
    }
    if (msg.tag === 'message' && this.control === undefined) {
      const schema = controlSchema();
      const id = await this.deps.registerSchema(`${this.deps.topic}-brabant.v1.Control`, schema);
      this.control = { id, type: avroType(schema) };
    }
    this.out.length = 0;
    this.assembler.handle(msg, this.out);
    for (const o of this.out) {
      if (o.type === 'event') this.add(await this.encodeOrFlush(o.event), o.event);
      else {
        if (o.skipped === 'origin') this.deps.metrics.skippedTransactions.inc({ reason: 'origin' });
        this.deps.metrics.transactions.inc();
        if (this.batch.length === 0) this.deps.onDurable(o.endLsn);
        else this.batchDurableLsn = o.endLsn;
      }
    }
    const l = this.deps.limits;
    if (this.batch.length >= l.maxEvents || this.batchBytes >= l.maxBytes) await this.flushNow();
  }

  private add(m: Message, e: AssembledEvent): void {
    if (this.batch.length === 0) this.batchStartedAt = this.now();
    this.batch.push(m);
    const size = (m.value as Buffer).length;
    this.batchBytes += size;
    const kind = e.kind === 'table' ? e.op.toLowerCase() : e.control.toLowerCase();
    this.deps.metrics.events.inc({ kind });
    this.deps.metrics.bytes.inc({}, size);
  }

  private async flushNow(): Promise<void> {
    if (this.batch.length === 0) return;
    const messages = this.batch;
    const bytes = this.batchBytes;
    const durable = this.batchDurableLsn;
    const started = this.now();
    await this.deps.sink.commitBatch(messages);
    // Only now, with the Kafka transaction committed, may the slot move.
    this.batch = [];
    this.batchBytes = 0;
    this.batchDurableLsn = undefined;
    const m = this.deps.metrics;
    m.batches.inc();
    m.batchEvents.observe(messages.length);
    m.batchBytes.observe(bytes);
    m.commitSeconds.observe((this.now() - started) / 1000);
    const last = decodePosition(messages[messages.length - 1]!.headers as Record<string, string>);
    if (last !== undefined) m.lastCommittedLsn.set(Number(last.commitLsn));
    if (durable !== undefined) this.deps.onDurable(durable);
  }

  /** On an event that cannot be sent, first commit what is batched before it, so progress stops right before it. */
  private async encodeOrFlush(e: AssembledEvent): Promise<Message> {
    try {
      return this.encode(e);
    } catch (err) {
      await this.flushNow().catch(() => {});
      throw err;
    }
  }

  private encode(e: AssembledEvent): Message {
    const tx = {
      xid: e.tx.xid,
      commitLsn: e.tx.commitLsn as bigint,
      commitTs: e.tx.commitTs,
      index: e.index,
      last: e.last,
    };
    const value =
      e.kind === 'table'
        ? encodeTableRecord(this.schemaIds.get(e.table.fingerprint)!, e.table, {
            origin: this.deps.origin,
            tx,
            op: e.op,
            key: e.key,
            before: e.before,
            after: e.after,
          })
        : encodeControlRecord(this.control!.id, this.control!.type, {
            origin: this.deps.origin,
            tx,
            kind: e.control,
            prefix: e.prefix,
            content: e.content,
          });
    const limit = this.deps.limits.maxMessageBytes - RECORD_OVERHEAD;
    if (value.length > limit) {
      const what =
        e.kind === 'table'
          ? `a ${e.op} of ${e.table.shape.schema}.${e.table.shape.name} with key ${showKey(e.key)}`
          : `a ${e.control} message`;
      throw new BrabantError(
        'MESSAGE_TOO_LARGE',
        `${what} encodes to ${value.length} bytes, over the limit of ${limit} (topic ${this.deps.topic} max.message.bytes ` +
          `${this.deps.limits.maxMessageBytes} less overhead); raise max.message.bytes on the topic and the broker's ` +
          'message.max.bytes, then BRABANT_CAPTURE_MAX_MESSAGE_BYTES, and restart capture (the slot has not moved past it)',
      );
    }
    return {
      key: this.deps.origin.node,
      value,
      partition: this.deps.partition,
      headers: encodeHeaders({ commitLsn: e.tx.commitLsn, index: e.index }, ENVELOPE_VERSION),
    };
  }
}

function showKey(key: Record<string, unknown> | null): string {
  return JSON.stringify(key, (_k, v) =>
    typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('hex') : v,
  );
}
