/**
 * The records of one assembled event (capture): a table change, control or DDL event encoded as
 * Avro with the Confluent framing and its position headers, split into Chunk records when over
 * the topic's message limit; a change that cannot be encoded becomes a marker in the change
 * topic and a dead letter beside it (rejects.ts). The control, DDL and chunk schemas are
 * registered on first use.
 */
import { type AvroType, avroType } from '../protocol/avro.ts';
import { encodeControlRecord, encodeDdlRecord, encodeTableRecord } from '../protocol/change-encoder.ts';
import { chunkSchema, HEADER_CHUNK, splitEvent } from '../protocol/chunks.ts';
import { type DdlEvent, decodeDdlEvent } from '../protocol/ddl.ts';
import { controlSchema, ddlEventSchema, ENVELOPE_VERSION } from '../protocol/envelope.ts';
import { encodeHeaders } from '../protocol/headers.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { encodeResyncHeaders, RESYNC_ENVELOPE_VERSION } from '../protocol/resync.ts';
import { DEAD_LETTER_TOPIC } from '../protocol/topics.ts';
import { BrabantError, describeError } from '../runtime/errors.ts';
import type { AssembledEvent, RejectedEvent } from './assembler.ts';
import type { OutMessage } from './kafka-sink.ts';
import type { PipelineDeps } from './pipeline.ts';
import { DEAD_LETTER_PREFIX, deadLetter, markerContent, type RejectedChange } from './rejects.ts';

/** Room for a record's key, headers and framing, and its batch's header, under max.message.bytes. */
const RECORD_OVERHEAD = 1024;

export class RecordEncoder {
  private control: { id: number; type: AvroType } | undefined;
  private ddl: { id: number; type: AvroType } | undefined;
  private chunkSchemaId: number | undefined;

  constructor(
    private readonly deps: Pick<
      PipelineDeps,
      'origin' | 'topic' | 'partition' | 'registerSchema' | 'limits' | 'log' | 'metrics'
    >,
    /** Registry ids of the table versions, by fingerprint (the pipeline registers them). */
    private readonly schemaIds: Map<string, number>,
    /** Whether a table is paused (its changes were announced once, when it paused). */
    private readonly isPausedTable: (table: string) => boolean,
  ) {}

  /** The records of one event: itself (or its parts), or its marker and dead letter. */
  async encode(e: AssembledEvent): Promise<OutMessage[]> {
    if (e.kind === 'rejected') return this.rejected(e);
    let value: Buffer;
    try {
      value =
        e.kind === 'table'
          ? this.encodeTable(e)
          : e.control === 'DDL'
            ? await this.encodeDdl(e)
            : this.encodeControl(e, await this.controlType());
    } catch (err) {
      if (err instanceof BrabantError && err.retriable) throw err;
      const table =
        e.kind === 'table' ? `${e.table.shape.schema}.${e.table.shape.name}` : 'a logical message';
      return this.rejected({
        ...e,
        kind: 'rejected',
        rejected: {
          code: err instanceof BrabantError ? err.code : 'VALUE_UNREPRESENTABLE',
          reason: `${table}: the change does not encode (${describeError(err)})`,
          fix: 'repair the row on the peers from the raw change in this dead letter, and report the error',
          table,
          raw: { op: e.kind === 'table' ? e.op : 'MESSAGE', columns: undefined, before: null, after: null },
        },
      });
    }
    const resync = e.kind === 'table' ? e.resync : undefined;
    const headers = {
      ...encodeHeaders(
        { commitLsn: e.tx.commitLsn, index: e.index },
        resync === undefined ? ENVELOPE_VERSION : RESYNC_ENVELOPE_VERSION,
      ),
      ...(resync === undefined ? {} : encodeResyncHeaders(resync)),
    };
    const record = (v: Buffer, extra: Record<string, string> = {}): OutMessage => ({
      topic: this.deps.topic,
      key: this.deps.origin.node,
      value: v,
      partition: this.deps.partition,
      headers: { ...headers, ...extra },
    });
    const limit = this.deps.limits.maxMessageBytes - RECORD_OVERHEAD;
    if (value.length <= limit) return [record(value)];
    const parts = splitEvent(value, {
      maxValueBytes: limit,
      chunkSchemaId: await this.chunkId(),
      origin: this.deps.origin,
      tx: this.txOf(e),
    })!;
    this.deps.metrics.splitEvents.inc();
    this.deps.log.info(
      {
        ...(e.kind === 'table' ? { table: `${e.table.shape.schema}.${e.table.shape.name}` } : {}),
        bytes: value.length,
        parts: parts.length,
      },
      'event over the topic message limit: split into parts',
    );
    return parts.map((p) => record(p.value, { [HEADER_CHUNK]: p.header }));
  }

  private async rejected(e: RejectedEvent): Promise<OutMessage[]> {
    const r: RejectedChange = e.rejected;
    const m = this.deps.metrics;
    m.deadLetters.inc({ code: r.code });
    const pausedTable = r.raw.op !== 'MESSAGE' && this.isPausedTable(r.table);
    // a paused table's changes were announced when it paused: one line per change would flood the log
    if (!pausedTable)
      this.deps.log.error(
        {
          table: r.table,
          code: r.code,
          reason: r.reason,
          fix: r.fix,
          commitLsn: formatLsn(e.tx.commitLsn),
          index: e.index,
        },
        `change of ${r.table} sent to ${DEAD_LETTER_TOPIC}: ${r.reason}; ${r.fix}`,
      );
    const control = await this.controlType();
    const marker = this.encodeControl(
      { ...e, kind: 'control', control: 'MESSAGE', prefix: DEAD_LETTER_PREFIX, content: markerContent(r) },
      control,
    );
    const dl = deadLetter(r, {
      node: this.deps.origin.node,
      region: this.deps.origin.region,
      ...e.tx,
      index: e.index,
    });
    const headers = encodeHeaders({ commitLsn: e.tx.commitLsn, index: e.index }, ENVELOPE_VERSION);
    const limit = this.deps.limits.maxMessageBytes - RECORD_OVERHEAD;
    const slices = Math.max(1, Math.ceil(dl.value.length / limit));
    const letters: OutMessage[] = Array.from({ length: slices }, (_, i) => ({
      topic: DEAD_LETTER_TOPIC,
      key: this.deps.origin.node,
      value: dl.value.subarray(i * limit, (i + 1) * limit),
      headers: { ...dl.headers, ...(slices > 1 ? { 'brabant.slice': `${i}/${slices}` } : {}) },
    }));
    return [
      {
        topic: this.deps.topic,
        key: this.deps.origin.node,
        value: marker,
        partition: this.deps.partition,
        headers,
      },
      ...letters,
    ];
  }

  private txOf(e: AssembledEvent) {
    return {
      xid: e.tx.xid,
      commitLsn: e.tx.commitLsn as bigint,
      commitTs: e.tx.commitTs,
      index: e.index,
      last: e.last,
    };
  }

  private encodeTable(e: Extract<AssembledEvent, { kind: 'table' }>): Buffer {
    return encodeTableRecord(
      this.schemaIds.get(e.table.fingerprint)!,
      e.table,
      {
        origin: this.deps.origin,
        tx: this.txOf(e),
        op: e.op,
        key: e.key,
        before: e.before,
        after: e.after,
      },
      e.resync === undefined ? ENVELOPE_VERSION : RESYNC_ENVELOPE_VERSION,
    );
  }

  private encodeControl(
    e: Extract<AssembledEvent, { kind: 'control' }>,
    control: { id: number; type: AvroType },
  ): Buffer {
    return encodeControlRecord(control.id, control.type, {
      origin: this.deps.origin,
      tx: this.txOf(e),
      kind: e.control,
      prefix: e.prefix,
      content: e.content,
    });
  }

  /**
   * A DDL event as a DdlEvent record (its fields readable by any Avro reader); content that is
   * not a DDL event this build knows stays a Control record, as it came.
   */
  private async encodeDdl(e: Extract<AssembledEvent, { kind: 'control' }>): Promise<Buffer> {
    let event: DdlEvent;
    try {
      event = decodeDdlEvent(e.content);
    } catch {
      return this.encodeControl(e, await this.controlType());
    }
    if (this.ddl === undefined) {
      const schema = ddlEventSchema();
      const id = await this.deps.registerSchema(`${this.deps.topic}-brabant.v1.DdlEvent`, schema);
      this.ddl = { id, type: avroType(schema) };
    }
    return encodeDdlRecord(this.ddl.id, this.ddl.type, { origin: this.deps.origin, tx: this.txOf(e), event });
  }

  private async controlType(): Promise<{ id: number; type: AvroType }> {
    if (this.control === undefined) {
      const schema = controlSchema();
      const id = await this.deps.registerSchema(`${this.deps.topic}-brabant.v1.Control`, schema);
      this.control = { id, type: avroType(schema) };
    }
    return this.control;
  }

  private async chunkId(): Promise<number> {
    this.chunkSchemaId ??= await this.deps.registerSchema(
      `${this.deps.topic}-brabant.v1.Chunk`,
      chunkSchema(),
    );
    return this.chunkSchemaId;
  }
}
