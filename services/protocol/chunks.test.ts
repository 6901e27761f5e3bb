import { randomBytes } from 'node:crypto';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { ChunkReassembler, chunkSchema, splitEvent } from './chunks.ts';
import { frame } from './envelope.ts';

const origin = { region: 'vlaanderen', node: 'vl-1' };
const tx = (index: number) => ({ xid: 9n, commitLsn: 0x16b3748n, commitTs: 1n, index, last: false });
const event = (bytes: number, schemaId = 101) => frame(schemaId, randomBytes(bytes));
const split = (e: Buffer, index = 0, max = 4096) =>
  splitEvent(e, { maxValueBytes: max, chunkSchemaId: 7, origin, tx: tx(index) })!;
const feed = (r: ChunkReassembler, parts: { value: Buffer; header: string }[]) =>
  parts.map((p) => r.push({ value: p.value, chunk: p.header }));

describe('split events', () => {
  it('leaves an event that fits alone, and splits a larger one into parts under the limit', () => {
    expect(
      splitEvent(event(100), { maxValueBytes: 4096, chunkSchemaId: 7, origin, tx: tx(0) }),
    ).toBeUndefined();
    const parts = split(event(20_000));
    expect(parts.length).toBeGreaterThan(4);
    expect(parts.every((p) => p.value.length <= 4096)).toBe(true);
    expect(parts.map((p) => p.header)).toEqual(parts.map((_, i) => `${i}/${parts.length}`));
  });

  it('every part is a Confluent-framed record a plain Avro reader decodes with the Chunk schema', () => {
    const e = event(10_000);
    const parts = split(e);
    const plain = avro.Type.forSchema(chunkSchema() as avro.Schema);
    const data = parts.map((p) => {
      expect(p.value[0]).toBe(0);
      expect(p.value.readInt32BE(1)).toBe(7);
      return (plain.fromBuffer(p.value.subarray(5)) as { data: Buffer }).data;
    });
    expect(Buffer.concat(data).equals(e)).toBe(true);
  });

  it('joins the parts back into the event; records that are no part pass through', () => {
    const r = new ChunkReassembler();
    const plainRecord = event(10);
    expect(r.push({ value: plainRecord, chunk: undefined })).toEqual({ kind: 'whole', value: plainRecord });
    const e = event(50_000);
    const out = feed(r, split(e));
    expect(out.slice(0, -1).every((o) => o.kind === 'pending')).toBe(true);
    const last = out[out.length - 1]!;
    expect(last.kind).toBe('joined');
    expect(last.kind === 'joined' && last.value.equals(e)).toBe(true);
    expect(r.pending).toBe(false);
  });

  it('ignores parts delivered again, and joins an event redelivered from its first part', () => {
    const r = new ChunkReassembler();
    const e = event(12_000);
    const parts = split(e);
    feed(r, parts.slice(0, 2));
    expect(r.push({ value: parts[1]!.value, chunk: parts[1]!.header })).toEqual({ kind: 'duplicate' });
    const rest = feed(r, parts.slice(2));
    expect(rest[rest.length - 1]!.kind).toBe('joined');
    // a restart from the first part's offset: the whole sequence again
    const again = feed(new ChunkReassembler(), parts);
    expect(again[again.length - 1]!.kind).toBe('joined');
  });

  it('refuses a sequence that cannot be whole, saying why', () => {
    const parts = split(event(12_000));
    const started = new ChunkReassembler();
    expect(() => started.push({ value: parts[1]!.value, chunk: parts[1]!.header })).toThrow(
      /arrived without the parts before it .*commit consumer offsets only before its first part/,
    );
    const gap = new ChunkReassembler();
    feed(gap, parts.slice(0, 1));
    expect(() => gap.push({ value: parts[2]!.value, chunk: parts[2]!.header })).toThrow(
      /without the parts before it/,
    );
    const interrupted = new ChunkReassembler();
    feed(interrupted, parts.slice(0, 2));
    expect(() => interrupted.push({ value: event(5), chunk: undefined })).toThrow(
      /incomplete: a record that is no part/,
    );
    expect(() => new ChunkReassembler().push({ value: parts[0]!.value, chunk: '3/2' })).toThrow(
      /not <part>\/<parts>/,
    );
    expect(() => new ChunkReassembler().push({ value: event(5), chunk: '0/2' })).toThrow(/no Chunk record/);
    // another event's parts while one is open
    const other = split(event(12_000), 1);
    const two = new ChunkReassembler();
    feed(two, parts.slice(0, 2));
    expect(() => two.push({ value: other[0]!.value, chunk: other[0]!.header })).toThrow(
      /incomplete: part 0 of the event/,
    );
    // the reader can go on with the new event
    const rest = feed(two, other.slice(1));
    expect(rest[rest.length - 1]!.kind).toBe('joined');
  });
});
