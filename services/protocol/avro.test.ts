import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { avroType, readZigzagLong, writeZigzagLong } from './avro.ts';

/** avsc's own long as Brabant declared it before: 8 bytes per value, packed by avsc. */
const PackedLong = avro.types.LongType.__with({
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

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Longs of every varint length, both signs, and the edges of 64 bits and of a double's 2^53. */
function someLongs(): bigint[] {
  const out = [0n, 1n, -1n, 63n, 64n, -64n, -65n, 2n ** 63n - 1n, -(2n ** 63n)];
  for (let bits = 1; bits < 64; bits++)
    for (const d of [-1n, 0n, 1n]) {
      const v = 2n ** BigInt(bits) + d;
      if (v < 2n ** 63n) out.push(v, -v);
    }
  const r = seeded(18);
  for (let i = 0; i < 2000; i++) {
    const bits = BigInt(Math.floor(r() * 63) + 1);
    const v = BigInt(Math.floor(r() * 2 ** 32)) * 2n ** 31n + BigInt(Math.floor(r() * 2 ** 31));
    out.push((r() < 0.5 ? -1n : 1n) * (v % 2n ** bits));
  }
  return out;
}

describe('Avro longs as bigints (avro.ts)', () => {
  const schema = { type: 'record', name: 'R', fields: [{ name: 'v', type: 'long' }] };
  const before = avro.Type.forSchema(schema as avro.Schema, {
    typeHook: (s) => (s === 'long' ? PackedLong : undefined),
  });
  const now = avroType(schema);

  it('writes every long to the same bytes as avsc packing 8-byte values, and reads them back the same', () => {
    for (const v of someLongs()) {
      const bytes = before.toBuffer({ v });
      expect(now.toBuffer({ v }).equals(bytes), `${v}`).toBe(true);
      expect((now.fromBuffer(bytes) as { v: bigint }).v).toBe(v);
    }
  });

  it('reads and writes the zigzag varint of a value on its own', () => {
    expect([...writeZigzagLong(0n)]).toEqual([0]);
    expect([...writeZigzagLong(-1n)]).toEqual([1]);
    expect([...writeZigzagLong(64n)]).toEqual([0x80, 0x01]);
    expect(readZigzagLong(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(
      -(2n ** 63n),
    );
  });

  it('refuses a value outside 64 signed bits, as before', () => {
    expect(() => now.toBuffer({ v: 2n ** 63n })).toThrow(RangeError);
    expect(() => before.toBuffer({ v: 2n ** 63n })).toThrow(RangeError);
    expect(() => now.toBuffer({ v: -(2n ** 63n) - 1n })).toThrow(RangeError);
  });

  it('keeps logical-type longs (timestamp-micros) bigints', () => {
    const t = avroType({
      type: 'record',
      name: 'T',
      fields: [{ name: 'at', type: { type: 'long', logicalType: 'timestamp-micros' } }],
    });
    const at = 1796190000123456n;
    expect((t.fromBuffer(t.toBuffer({ at })) as { at: bigint }).at).toBe(at);
  });
});
