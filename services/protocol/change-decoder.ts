/**
 * Reader side of the wire contract: Confluent-framed Avro events → typed change events with
 * PostgreSQL text forms, keyed by column name. Schemas come from the registry by id (cached), so
 * a reader handles every table version and envelope version a writer registered.
 */
import { BrabantError } from '../runtime/errors.ts';
import { type AvroType, avroType } from './avro.ts';
import { DDL_MESSAGE_PREFIX } from './ddl.ts';
import type { ControlKind, Operation, Origin } from './envelope.ts';
import { NEWEST_READABLE_ENVELOPE, unframe } from './envelope.ts';
import { type Lsn, lsn } from './lsn.ts';
import { type AvroSchema, type Codec, codecFromAvro } from './pg-types.ts';
import { decodeResyncHeaders, RESYNC_ENVELOPE_VERSION, type ResyncMark } from './resync.ts';
import { RegistryHttpError } from './schema-registry.ts';
import { type TextValue, UNCHANGED } from './table-schema.ts';

export interface TxPosition {
  xid: bigint;
  commitLsn: Lsn;
  /** Unix microseconds. */
  commitTs: bigint;
  index: number;
  last: boolean;
}

export type Row = Record<string, TextValue>;

export interface RowChange {
  kind: 'row';
  origin: Origin;
  tx: TxPosition;
  op: Operation;
  schema: string;
  table: string;
  /**
   * Replica identity columns (null for TRUNCATE; empty for a table without replica identity). A
   * key column may be NULL only in a REPLICA IDENTITY FULL table, whose key is the whole row.
   */
  key: Record<string, string | null> | null;
  before: Row | null;
  after: Row | null;
  /**
   * A resync row (envelope 2): a row or tombstone the source re-emitted, whose version is its
   * original commit's (here), not its transaction's (the time of the resync).
   */
  resync?: ResyncMark;
}

export interface ControlChange {
  kind: 'control';
  origin: Origin;
  tx: TxPosition;
  control: ControlKind;
  prefix: string;
  content: Buffer;
}

export type DecodedChange = RowChange | ControlChange;

interface FieldReader {
  field: string;
  column: string;
  codec: Codec;
}

interface Reader {
  type: AvroType;
  kind: 'table' | 'control' | 'ddl';
  key: FieldReader[];
  row: FieldReader[];
}

export interface SchemaSource {
  schemaById(id: number): Promise<string>;
}

export class ChangeDecoder {
  private readonly readers = new Map<number, Promise<Reader>>();

  constructor(private readonly registry: SchemaSource) {}

  /** `headers`: the Kafka record's, which carry a resync row's version (envelope 2). */
  async decode(buf: Buffer, headers?: Parameters<typeof decodeResyncHeaders>[0]): Promise<DecodedChange> {
    const { schemaId, body } = unframe(buf);
    const reader = await this.reader(schemaId);
    let v: Record<string, unknown>;
    try {
      v = reader.type.fromBuffer(body) as Record<string, unknown>;
    } catch (err) {
      throw new BrabantError(
        'UNDECODABLE',
        `body does not match schema id ${schemaId}: ${(err as Error).message}`,
      );
    }
    const envelope = v.envelope as number;
    if (envelope > NEWEST_READABLE_ENVELOPE) {
      // Not poison: a newer capture wrote it. Guessing its meaning could apply it wrongly.
      throw new BrabantError(
        'ENVELOPE_UNSUPPORTED',
        `a record of ${describeOrigin(v.origin)} (schema id ${schemaId}) has envelope version ${envelope}, ` +
          `but this build reads versions up to ${NEWEST_READABLE_ENVELOPE}: upgrade apply to a build that reads envelope ${envelope}`,
      );
    }
    const t = v.tx as { xid: bigint; commitLsn: bigint; commitTs: bigint; index: number; last: boolean };
    const tx: TxPosition = {
      xid: t.xid,
      commitLsn: lsn(t.commitLsn),
      commitTs: t.commitTs,
      index: t.index,
      last: t.last,
    };
    const origin = v.origin as Origin;
    if (reader.kind === 'ddl') {
      // the DDL event as apply reads it (protocol/ddl.ts): its fields, as the JSON content
      const { envelope: _e, origin: _o, tx: _t, ...event } = v;
      const tables = event.tables as { columns: { default: { string: string } | null }[] }[];
      event.tables = tables.map((t) => ({
        ...t,
        columns: t.columns.map((c) => ({ ...c, default: c.default === null ? null : c.default.string })),
      }));
      return {
        kind: 'control',
        origin,
        tx,
        control: 'DDL',
        prefix: DDL_MESSAGE_PREFIX,
        content: Buffer.from(JSON.stringify(event)),
      };
    }
    if (reader.kind === 'control') {
      return {
        kind: 'control',
        origin,
        tx,
        control: v.kind as ControlKind,
        prefix: v.prefix as string,
        content: v.content as Buffer,
      };
    }
    const keyRec = unwrap(v.key);
    const resync = envelope === RESYNC_ENVELOPE_VERSION ? resyncMark(headers, v.op, schemaId) : undefined;
    return {
      kind: 'row',
      origin,
      tx,
      op: v.op as Operation,
      schema: v.schema as string,
      table: v.table as string,
      key: keyRec === null ? null : readKey(reader.key, keyRec),
      before: readRow(reader.row, unwrap(v.before)),
      after: readRow(reader.row, unwrap(v.after)),
      ...(resync === undefined ? {} : { resync }),
    };
  }

  private reader(id: number): Promise<Reader> {
    let r = this.readers.get(id);
    if (r === undefined) {
      r = this.load(id);
      this.readers.set(id, r);
      // a failed load (registry down) must be retried next time, not cached
      r.catch(() => this.readers.delete(id));
    }
    return r;
  }

  private async load(id: number): Promise<Reader> {
    let text: string;
    try {
      text = await this.registry.schemaById(id);
    } catch (err) {
      // Not the record's fault: the registry lost the schema, or is another region's, or is down.
      if (err instanceof RegistryHttpError && err.status === 404) {
        throw new BrabantError('SCHEMA_UNAVAILABLE', `schema id ${id} is unknown to the registry`, {
          cause: err,
        });
      }
      throw err;
    }
    const schema = JSON.parse(text) as { name: string; fields: { name: string; type: unknown }[] };
    const type = avroType(schema);
    if (schema.name === 'Control') return { type, kind: 'control', key: [], row: [] };
    if (schema.name === 'DdlEvent') return { type, kind: 'ddl', key: [], row: [] };
    const recordOf = (fieldName: string) => {
      const f = schema.fields.find((x) => x.name === fieldName);
      const branches = (f?.type ?? []) as unknown[];
      return branches.find((b) => typeof b === 'object' && b !== null) as
        | { fields: Record<string, unknown>[] }
        | undefined;
    };
    const keyRecord = recordOf('key');
    const rowRecord = recordOf('before');
    if (keyRecord === undefined || rowRecord === undefined) {
      throw new BrabantError(
        'UNDECODABLE',
        `schema id ${id} is neither a Brabant table change nor a control record`,
      );
    }
    const fieldReader = (f: Record<string, unknown>): FieldReader => {
      const t = f.type as AvroSchema;
      const branches = Array.isArray(t) ? t : [t];
      const main = branches.find((b) => b !== 'null' && b !== 'string' && !isUnchanged(b)) ?? 'string';
      return {
        field: f.name as string,
        column: (f['brabant.column'] as string | undefined) ?? (f.name as string),
        codec: codecFromAvro(main),
      };
    };
    return {
      type,
      kind: 'table',
      key: keyRecord.fields.map(fieldReader),
      row: rowRecord.fields.map(fieldReader),
    };
  }
}

/** A version 2 table record is a resync row: an INSERT or DELETE whose headers carry its version. */
function resyncMark(
  headers: Parameters<typeof decodeResyncHeaders>[0],
  op: unknown,
  schemaId: number,
): ResyncMark {
  const mark = decodeResyncHeaders(headers);
  if (mark === undefined)
    throw new BrabantError(
      'UNDECODABLE',
      `a table record of envelope version ${RESYNC_ENVELOPE_VERSION} (schema id ${schemaId}) without its resync headers`,
    );
  if (op !== 'INSERT' && op !== 'DELETE')
    throw new BrabantError('UNDECODABLE', `a resync record of operation ${String(op)}`);
  return mark;
}

function describeOrigin(o: unknown): string {
  const origin = o as Partial<Origin> | null;
  return origin?.node === undefined ? 'an unknown node' : `node ${origin.node} (${origin.region})`;
}

function isUnchanged(b: unknown): boolean {
  return (
    b === 'brabant.v1.Unchanged' ||
    (typeof b === 'object' && b !== null && (b as { name?: string }).name === 'Unchanged')
  );
}

/**
 * A wrapped union's value as avsc reads it is an object of a class per branch, whose one own key
 * is the branch name and whose `unwrap()` gives the value: the name is read once per class.
 */
interface Wrapped {
  unwrap(): unknown;
}
const branchNames = new WeakMap<object, string>();
function branchOf(w: Wrapped): string {
  const ctor = w.constructor;
  let name = branchNames.get(ctor);
  if (name === undefined) {
    name = Object.keys(w)[0]!;
    branchNames.set(ctor, name);
  }
  return name;
}

/** The value of a wrapped union, or null. */
function unwrap(u: unknown): Record<string, unknown> | null {
  return u === null ? null : ((u as Wrapped).unwrap() as Record<string, unknown>);
}

function readValue(f: FieldReader, raw: unknown): TextValue {
  if (raw === null || raw === undefined) return null;
  if (typeof raw === 'object' && typeof (raw as Partial<Wrapped>).unwrap === 'function') {
    const branch = branchOf(raw as Wrapped);
    if (branch === 'brabant.v1.Unchanged') return UNCHANGED;
    const value = (raw as Wrapped).unwrap();
    if (branch === 'string' && f.codec.branch !== 'string') return value as string;
    return f.codec.toText(value);
  }
  return f.codec.toText(raw);
}

function readRow(fields: FieldReader[], rec: Record<string, unknown> | null): Row | null {
  if (rec === null) return null;
  const out: Row = {};
  for (const f of fields) out[f.column] = readValue(f, rec[f.field]);
  return out;
}

function readKey(fields: FieldReader[], rec: Record<string, unknown>): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const f of fields) {
    const v = readValue(f, rec[f.field]);
    if (v === UNCHANGED) throw new BrabantError('UNDECODABLE', `key column ${f.column} is marked unchanged`);
    // NULL is a legitimate key value of a REPLICA IDENTITY FULL table
    out[f.column] = v;
  }
  return out;
}
