/**
 * Change events as TypeScript values, and the Confluent wire framing around their Avro bodies.
 * Framing: byte 0 = magic 0, bytes 1..4 = schema id (big-endian int32), then the Avro binary.
 */
import { readFileSync } from 'node:fs';
import { BrabantError } from '../runtime/errors.ts';

/** The envelope version of ordinary change records (what capture writes, except resync rows). */
export const ENVELOPE_VERSION = 1;
/**
 * The newest envelope version this build reads. Version 2 adds resync rows (protocol/resync.ts):
 * table records whose row version travels in their headers; every other record stays version 1.
 */
export const NEWEST_READABLE_ENVELOPE = 2;

export interface Origin {
  region: string;
  node: string;
}

export interface TransactionRef {
  xid: bigint;
  commitLsn: bigint;
  /** Unix microseconds. */
  commitTs: bigint;
  index: number;
  last: boolean;
}

export type Operation = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';
export type ControlKind = 'HEARTBEAT' | 'MESSAGE' | 'DDL';

export interface ControlEvent {
  envelope: number;
  origin: Origin;
  tx: TransactionRef;
  kind: ControlKind;
  prefix: string;
  content: Buffer;
}

const SCHEMA_DIR = new URL('../../schemas/v1/', import.meta.url);

export function contractSchema(
  name: 'Origin' | 'Transaction' | 'Control' | 'DdlEvent' | 'TableChange',
): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`${name}.avsc`, SCHEMA_DIR), 'utf8')) as Record<string, unknown>;
}

/** The Control schema with its named types inlined, as registered. */
export function controlSchema(): Record<string, unknown> {
  return inlineShared(contractSchema('Control'));
}

/** The DdlEvent schema (a DDL with its own fields, in order among the rows), as registered. */
export function ddlEventSchema(): Record<string, unknown> {
  return inlineShared(contractSchema('DdlEvent'));
}

/** Replace the first reference to each shared named type by its definition (the registry needs self-contained schemas). */
export function inlineShared(schema: Record<string, unknown>): Record<string, unknown> {
  const shared: Record<string, Record<string, unknown>> = {
    'brabant.v1.Origin': contractSchema('Origin'),
    'brabant.v1.Transaction': contractSchema('Transaction'),
  };
  const fields = (schema.fields as { name: string; type: unknown }[]).map((f) => {
    if (typeof f.type === 'string' && shared[f.type] !== undefined) {
      const def = shared[f.type]!;
      delete shared[f.type];
      return { ...f, type: def };
    }
    return f;
  });
  return { ...schema, fields };
}

export const MAGIC_BYTE = 0;

export function frame(schemaId: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = MAGIC_BYTE;
  out.writeInt32BE(schemaId, 1);
  body.copy(out, 5);
  return out;
}

export function unframe(buf: Buffer): { schemaId: number; body: Buffer } {
  if (buf.length < 5) {
    throw new BrabantError(
      'UNDECODABLE',
      `message of ${buf.length} byte(s) is too short for the Confluent framing`,
    );
  }
  if (buf[0] !== MAGIC_BYTE) {
    throw new BrabantError(
      'UNDECODABLE',
      `message starts with byte ${buf[0]}, not the Confluent magic byte 0`,
    );
  }
  return { schemaId: buf.readInt32BE(1), body: buf.subarray(5) };
}
