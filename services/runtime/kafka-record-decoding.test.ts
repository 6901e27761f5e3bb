import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { type BatchContext, decodeRecord, type RecordDecoder } from './kafka-record-decoding.ts';
import { kafkajsOriginal, seeded } from './kafkajs-original.fixture.ts';

const require = createRequire(import.meta.url);
const base = 'kafkajs/src/protocol';

type Encoder = { writeEncoder(e: unknown): Encoder; buffer: Buffer };
const Encoder = require(`${base}/encoder.js`) as new () => Encoder;
const Decoder = require(`${base}/decoder.js`) as new (b: Buffer) => RecordDecoder;
const encodeRecord = kafkajsOriginal<(r: Record<string, unknown>) => Encoder>(
  `${base}/recordBatch/record/v0/index.js`,
);
const kafkajsDecode = kafkajsOriginal<(d: RecordDecoder, ctx: BatchContext) => unknown>(
  `${base}/recordBatch/record/v0/decoder.js`,
);

/** A decoded record as text, Buffers as hex (deep equality of Buffers byte by byte is slow). */
function comparable(r: unknown): string {
  return JSON.stringify(r, (_k, v) =>
    v !== null && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)
      ? `hex:${Buffer.from(v.data).toString('hex')}`
      : v,
  );
}

describe('fetched records decoded as kafkajs decodes them (kafkajs patch)', () => {
  it('gives every field kafkajs gives: offsets, timestamps, keys, values, repeated and odd headers', () => {
    const rnd = seeded(7);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
    const records = Array.from({ length: 500 }, (_, i) => ({
      offsetDelta: i,
      // deltas of every varlong length, negative ones and ones beyond 2^53 included
      timestampDelta: pick([0, 1, -1, 127, 128, -4_000_000, 2 ** 40 + 3, -(2 ** 48), 2 ** 55 + 1]),
      key: pick([null, bytes(0), bytes(9), Buffer.from('clé-€')]),
      value: pick([null, bytes(150), bytes(5_000)]),
      headers: pick([
        {},
        { 'brabant.position': bytes(16), 'brabant.source': Buffer.from('vl-1') },
        { a: [Buffer.from('1'), Buffer.from('2'), Buffer.from('3')], ünï: Buffer.from('€') },
        { '': bytes(2), 'x-null-key': Buffer.from('') },
      ]) as Record<string, Buffer | Buffer[]>,
    }));
    const e = new Encoder();
    for (const r of records) e.writeEncoder(encodeRecord(r));
    const contexts: BatchContext[] = [
      {
        firstOffset: '0',
        firstTimestamp: '1764633600123',
        magicByte: 2,
        timestampType: 0,
        maxTimestamp: '1764633600999',
      },
      {
        firstOffset: '9007199254740000',
        firstTimestamp: '-1',
        magicByte: 2,
        timestampType: 0,
        maxTimestamp: '-1',
      },
      {
        firstOffset: '42',
        firstTimestamp: '1764633600123',
        magicByte: 2,
        isControlBatch: true,
        timestampType: 1,
        maxTimestamp: '1764633609999',
      },
    ];
    for (const ctx of contexts) {
      const ours = new Decoder(e.buffer);
      const theirs = new Decoder(e.buffer);
      for (let i = 0; i < records.length; i++) {
        ours.readVarInt(); // the record's length, read by the batch decoder
        theirs.readVarInt();
        const a = decodeRecord(ours, ctx);
        const b = kafkajsDecode(theirs, ctx);
        expect(comparable(a), `record ${i}`).toBe(comparable(b));
        expect(ours.offset).toBe(theirs.offset);
      }
    }
  }, 60_000);

  it('keeps headers named like Object properties as headers (kafkajs took the inherited constructor for a first value)', () => {
    const headers: Record<string, Buffer> = { constructor: Buffer.from('c'), toString: Buffer.from('t') };
    Object.defineProperty(headers, '__proto__', { value: Buffer.from('p'), enumerable: true });
    const d = new Decoder(encodeRecord({ key: null, value: null, headers }).buffer);
    d.readVarInt();
    const r = decodeRecord(d, {
      firstOffset: '0',
      firstTimestamp: '0',
      magicByte: 2,
      timestampType: 0,
      maxTimestamp: '0',
    });
    expect(Object.keys(r.headers)).toEqual(['constructor', 'toString', '__proto__']);
    expect(Object.getPrototypeOf(r.headers)).toBe(Object.prototype);
    expect(Object.values(r.headers).map((v) => String(v))).toEqual(['c', 't', 'p']);
  });
});
