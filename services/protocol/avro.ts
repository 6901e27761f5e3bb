/**
 * avsc set-up shared by every schema Brabant builds or reads: Avro longs are bigints (LSNs, int8
 * values and microsecond timestamps do not fit in a double), unions are wrapped
 * (`{ "string": "x" }`) so that a string and an enum branch never get confused.
 */
import avro from 'avsc';

const BigLong = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(),
  toBuffer: (n: bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(n);
    return buf;
  },
  fromJSON: (v: unknown) => BigInt(v as string),
  toJSON: (n: bigint) => Number(n),
  isValid: (n: unknown) => typeof n === 'bigint',
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

export type AvroType = avro.Type;

export function avroType(schema: unknown): AvroType {
  return avro.Type.forSchema(schema as avro.Schema, {
    wrapUnions: true,
    // Every long, also one with a logical type (timestamp-micros, …), is a bigint.
    typeHook: (s: unknown) =>
      s === 'long' || (typeof s === 'object' && s !== null && (s as { type?: unknown }).type === 'long')
        ? BigLong
        : undefined,
  });
}
