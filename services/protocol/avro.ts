/**
 * avsc set-up shared by every schema Brabant builds or reads: Avro longs are bigints (LSNs, int8
 * values and microsecond timestamps do not fit in a double), unions are wrapped
 * (`{ "string": "x" }`) so that a string and an enum branch never get confused.
 */
import avro from 'avsc';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * An Avro long (zigzag varint) from its bytes as a bigint. Up to 7 bytes (49 bits) the value is
 * exact in a double; longer ones are read in bigints.
 */
export function readZigzagLong(buf: Buffer): bigint {
  const len = buf.length;
  if (len <= 7) {
    let n = 0;
    let mul = 1;
    for (let i = 0; i < len; i++) {
      n += (buf[i]! & 0x7f) * mul;
      mul *= 128;
    }
    return BigInt(n % 2 === 1 ? -(n + 1) / 2 : n / 2);
  }
  let z = 0n;
  for (let i = len - 1; i >= 0; i--) z = (z << 7n) | BigInt(buf[i]! & 0x7f);
  return z & 1n ? -((z + 1n) >> 1n) : z >> 1n;
}

/** The Avro long (zigzag varint) bytes of `n`, which must fit in 64 signed bits. */
export function writeZigzagLong(n: bigint): Buffer {
  if (n < INT64_MIN || n > INT64_MAX)
    throw new RangeError(`${n} does not fit in an Avro long (64-bit signed)`);
  if (n >= -(2n ** 48n) && n < 2n ** 48n) {
    // exact in a double: 49 bits after the zigzag
    const v = Number(n);
    let z = v < 0 ? -v * 2 - 1 : v * 2;
    let len = 1;
    for (let t = z; t >= 128; t = Math.floor(t / 128)) len++;
    const out = Buffer.allocUnsafe(len);
    for (let i = 0; i < len - 1; i++) {
      out[i] = (z % 128) | 0x80;
      z = Math.floor(z / 128);
    }
    out[len - 1] = z;
    return out;
  }
  let z = n < 0n ? -n * 2n - 1n : n * 2n;
  const bytes: number[] = [];
  while (z >= 128n) {
    bytes.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  bytes.push(Number(z));
  return Buffer.from(bytes);
}

// noUnpack: avsc hands over a long's own varint bytes (no 8-byte buffer per value)
const BigLong = avro.types.LongType.__with(
  {
    fromBuffer: readZigzagLong,
    toBuffer: writeZigzagLong,
    fromJSON: (v: unknown) => BigInt(v as string),
    toJSON: (n: bigint) => Number(n),
    isValid: (n: unknown) => typeof n === 'bigint',
    compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
  },
  true,
);

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
