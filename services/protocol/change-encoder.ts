/**
 * Writer side of the wire contract: a change event as the Avro body of its table version (or of
 * the Control or DdlEvent schema) in the Confluent framing. Capture encodes with it; the golden fixtures
 * (schemas/v1/fixtures) are made with it, so what the writer produces is pinned by a test.
 */
import type { AvroType } from './avro.ts';
import type { DdlEvent } from './ddl.ts';
import { type ControlKind, ENVELOPE_VERSION, frame, type Operation, type Origin } from './envelope.ts';
import type { TableSchema } from './table-schema.ts';

export interface EncodedTx {
  xid: bigint;
  commitLsn: bigint;
  /** Unix microseconds. */
  commitTs: bigint;
  index: number;
  last: boolean;
}

export interface TableRecord {
  origin: Origin;
  tx: EncodedTx;
  op: Operation;
  /** Key and Row records as TableSchema.key()/row() build them (null where the event has none). */
  key: Record<string, unknown> | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

export interface ControlRecord {
  origin: Origin;
  tx: EncodedTx;
  kind: ControlKind;
  prefix: string;
  content: Buffer;
}

/**
 * A table change framed with its registered schema id; `envelope` 2 for a resync row (its
 * version in the record's headers, protocol/resync.ts), else 1.
 */
export function encodeTableRecord(
  schemaId: number,
  table: TableSchema,
  r: TableRecord,
  envelope = ENVELOPE_VERSION,
): Buffer {
  const body = table.type.toBuffer({
    envelope,
    origin: r.origin,
    tx: r.tx,
    op: r.op,
    schema: table.shape.schema,
    table: table.shape.name,
    key: r.key === null ? null : { [`${table.fullName}.Key`]: r.key },
    before: r.before === null ? null : { [`${table.fullName}.Row`]: r.before },
    after: r.after === null ? null : { [`${table.fullName}.Row`]: r.after },
  });
  return frame(schemaId, body);
}

/** A control event (heartbeat, logical message, DDL) framed with the Control schema's id. */
export function encodeControlRecord(schemaId: number, control: AvroType, r: ControlRecord): Buffer {
  const body = control.toBuffer({
    envelope: ENVELOPE_VERSION,
    origin: r.origin,
    tx: r.tx,
    kind: r.kind,
    prefix: r.prefix,
    content: r.content,
  });
  return frame(schemaId, body);
}

/** A DDL event framed with the DdlEvent schema's id: its fields readable by any Avro reader. */
export function encodeDdlRecord(
  schemaId: number,
  type: AvroType,
  r: { origin: Origin; tx: EncodedTx; event: DdlEvent },
): Buffer {
  const e = r.event;
  const body = type.toBuffer({
    envelope: ENVELOPE_VERSION,
    origin: r.origin,
    tx: r.tx,
    version: e.version,
    statement: e.statement,
    searchPath: e.searchPath,
    role: e.role,
    tags: e.tags,
    seq: e.seq,
    concurrently: e.concurrently,
    objects: e.objects,
    dropped: e.dropped,
    // unions are wrapped (protocol/avro.ts)
    tables: e.tables.map((t) => ({
      ...t,
      columns: t.columns.map((c) => ({ ...c, default: c.default === null ? null : { string: c.default } })),
    })),
    renames: e.renames,
  });
  return frame(schemaId, body);
}
