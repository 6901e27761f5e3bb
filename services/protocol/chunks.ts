/**
 * Change events too large for one Kafka record, split across consecutive records, and the pure
 * reassembler readers put in front of their decoder.
 *
 * Why split rather than raise limits: PostgreSQL allows 1 GB per value (and a row may have many),
 * while Kafka refuses a record over the topic's max.message.bytes (1 MB by default), a request
 * over the broker's socket.request.max.bytes (100 MB) whatever the topic says, and every consumer
 * would need its fetch sizes raised. Parts of at most the topic's limit replicate any row with the
 * defaults of the stack and of every client.
 *
 * Grammar (schemas/v1/Chunk.avsc): an event of N > 1 parts is N consecutive records of its node's
 * partition, all in one Kafka transaction (a read_committed reader sees all or none), each a
 * Confluent-framed brabant.v1.Chunk record with the event's own position headers
 * (brabant.commit-lsn, brabant.index) and `brabant.chunk: <part>/<N>`; the `data` of parts 0..N-1
 * concatenated is the whole event's framed record. Every part is a valid Avro record a standard
 * client decodes with the registered Chunk schema.
 */
import { readFileSync } from 'node:fs';
import { BrabantError } from '../runtime/errors.ts';
import { type AvroType, avroType } from './avro.ts';
import { ENVELOPE_VERSION, frame, inlineShared, type Origin, unframe } from './envelope.ts';
import type { StreamPosition } from './lsn.ts';

export const HEADER_CHUNK = 'brabant.chunk';

/** The Chunk schema with its named types inlined, as registered (subject `<topic>-brabant.v1.Chunk`). */
export function chunkSchema(): Record<string, unknown> {
  const text = readFileSync(new URL('../../schemas/v1/Chunk.avsc', import.meta.url), 'utf8');
  return inlineShared(JSON.parse(text) as Record<string, unknown>);
}

let chunkType: AvroType | undefined;
function type(): AvroType {
  chunkType ??= avroType(chunkSchema());
  return chunkType;
}

export interface ChunkTx {
  xid: bigint;
  commitLsn: bigint;
  commitTs: bigint;
  index: number;
  last: boolean;
}

export interface ChunkRecord {
  /** Framed Chunk record (its schema id first). */
  value: Buffer;
  /** `<part>/<parts>` for the brabant.chunk header. */
  header: string;
}

/**
 * Splits a framed event over `maxValueBytes` into framed Chunk records of at most that many bytes
 * each; an event that fits is returned as it is (one record, no header).
 */
export function splitEvent(
  event: Buffer,
  opts: { maxValueBytes: number; chunkSchemaId: number; origin: Origin; tx: ChunkTx },
): ChunkRecord[] | undefined {
  if (event.length <= opts.maxValueBytes) return undefined;
  // Room for the Chunk envelope around the slice: framing, origin, tx, part numbers.
  const overhead = 64 + Buffer.byteLength(opts.origin.region) + Buffer.byteLength(opts.origin.node);
  const slice = opts.maxValueBytes - overhead;
  if (slice < 1024)
    throw new BrabantError(
      'CONFIG_INVALID',
      `a message limit of ${opts.maxValueBytes} bytes is too small to split events`,
    );
  const parts = Math.ceil(event.length / slice);
  const out: ChunkRecord[] = [];
  for (let part = 0; part < parts; part++) {
    const body = type().toBuffer({
      envelope: ENVELOPE_VERSION,
      origin: opts.origin,
      tx: opts.tx,
      part,
      parts,
      size: BigInt(event.length),
      data: event.subarray(part * slice, Math.min(event.length, (part + 1) * slice)),
    });
    out.push({ value: frame(opts.chunkSchemaId, body), header: `${part}/${parts}` });
  }
  return out;
}

/** `<part>/<parts>` → numbers, or undefined when the record is not a part. */
export function parseChunkHeader(text: string | undefined): { part: number; parts: number } | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(text);
  if (m === null || Number(m[1]) >= Number(m[2]))
    throw new BrabantError(
      'UNDECODABLE',
      `record header ${HEADER_CHUNK}=${JSON.stringify(text)} is not <part>/<parts>`,
    );
  return { part: Number(m[1]), parts: Number(m[2]) };
}

export type Reassembled =
  /** A record that is no part: decode it as it is. */
  | { kind: 'whole'; value: Buffer }
  /** The last part arrived: `value` is the whole event, to decode like any record. */
  | { kind: 'joined'; value: Buffer; parts: number }
  /** A part before the last: wait for the rest (do not commit the consumer offset past the first part). */
  | { kind: 'pending' }
  /** A part seen again (redelivery after a restart): ignore it. */
  | { kind: 'duplicate' };

interface Open {
  position: StreamPosition;
  parts: number;
  size: number;
  next: number;
  slices: Buffer[];
}

/**
 * Joins the parts of split events, for ONE partition of a change topic (parts of an event are
 * consecutive there). Feed it every record of the partition in offset order; it holds at most one
 * event's parts. Pure: no I/O, no clock.
 *
 * Throws UNDECODABLE on a sequence that cannot be whole (a part missing, another record between
 * parts, sizes that do not add up): with read_committed that only happens when the reader skipped
 * records, e.g. committed its consumer offset past a first part. A reader that restarts from an
 * offset inside an event's parts meets part k > 0 with nothing open: that throws too, so keep
 * the committed offset at or before the first part of any event still pending.
 */
export class ChunkReassembler {
  private open: Open | undefined;

  push(r: { value: Buffer; chunk: string | undefined }): Reassembled {
    const c = parseChunkHeader(r.chunk);
    if (c === undefined) {
      if (this.open !== undefined) {
        const o = this.open;
        this.open = undefined;
        throw broken(o, `a record that is no part came after part ${o.next - 1}`);
      }
      return { kind: 'whole', value: r.value };
    }
    const chunk = decodeChunk(r.value);
    const position = { commitLsn: chunk.tx.commitLsn, index: chunk.tx.index } as StreamPosition;
    if (chunk.part !== c.part || chunk.parts !== c.parts)
      throw new BrabantError(
        'UNDECODABLE',
        `chunk header ${r.chunk} disagrees with its record (part ${chunk.part}/${chunk.parts})`,
      );
    const o = this.open;
    if (o !== undefined && samePosition(o.position, position) && c.part < o.next)
      return { kind: 'duplicate' };
    if (c.part === 0) {
      this.open = { position, parts: c.parts, size: Number(chunk.size), next: 1, slices: [chunk.data] };
      if (o !== undefined)
        throw broken(o, `part 0 of the event at ${show(position)} came after part ${o.next - 1}`);
      return { kind: 'pending' };
    }
    if (o === undefined || !samePosition(o.position, position) || c.part !== o.next || c.parts !== o.parts) {
      this.open = undefined;
      throw new BrabantError(
        'UNDECODABLE',
        `part ${c.part}/${c.parts} of the event at ${show(position)} arrived without the parts before it ` +
          '(the reader started inside a split event: commit consumer offsets only before its first part)',
      );
    }
    o.slices.push(chunk.data);
    o.next++;
    if (o.next < o.parts) return { kind: 'pending' };
    this.open = undefined;
    const value = Buffer.concat(o.slices);
    if (value.length !== o.size) throw broken(o, `its parts hold ${value.length} bytes, not ${o.size}`);
    return { kind: 'joined', value, parts: o.parts };
  }

  /** Whether parts of an event are held (its first part's offset must not be committed yet). */
  get pending(): boolean {
    return this.open !== undefined;
  }
}

function decodeChunk(buf: Buffer) {
  const { body } = unframe(buf);
  try {
    return type().fromBuffer(body) as {
      origin: Origin;
      tx: ChunkTx;
      part: number;
      parts: number;
      size: bigint;
      data: Buffer;
    };
  } catch (err) {
    throw new BrabantError(
      'UNDECODABLE',
      `a record with a ${HEADER_CHUNK} header is no Chunk record: ${(err as Error).message}`,
    );
  }
}

function samePosition(a: StreamPosition, b: StreamPosition): boolean {
  return a.commitLsn === b.commitLsn && a.index === b.index;
}

function show(p: StreamPosition): string {
  return `commit LSN ${p.commitLsn} index ${p.index}`;
}

function broken(o: Open, why: string): BrabantError {
  return new BrabantError('UNDECODABLE', `the split event at ${show(o.position)} is incomplete: ${why}`);
}
