/**
 * One record of a fetched record batch (RecordBatch v2), decoded to what kafkajs 2.2.4's record
 * decoder returns, field for field. kafkajs computes each record's offset and timestamp in 64-bit
 * `Long` objects (BigInt) and builds its headers object by copying it once per header; apply's
 * W1 profile had kafkajs's decoding at ~12 % of its time. Here both are plain numbers whenever
 * they fit exactly (offsets and millisecond timestamps do), BigInt otherwise.
 * services/runtime/kafkajs-patch.ts puts it in kafkajs's place.
 *
 * Record: length VARINT, attributes INT8, timestamp_delta VARLONG, offset_delta VARINT,
 *   key VARINT-bytes, value VARINT-bytes, [header key VARINT-string, value VARINT-bytes] (VARINT count)
 */

/** kafkajs's Decoder, as far as a record is read from it. */
export interface RecordDecoder {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarInt(): number;
  readVarLong(): { toString(): string };
}

export interface BatchContext {
  firstOffset: string;
  firstTimestamp: string;
  magicByte: number;
  isControlBatch?: boolean;
  timestampType: number;
  maxTimestamp: string;
}

export type Headers = Record<string, Buffer | null | (Buffer | null)[]>;

export interface DecodedRecord {
  magicByte: number;
  attributes: number;
  timestamp: string;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers;
  isControlRecord: boolean;
  batchContext: BatchContext;
}

/** Kafka's timestamp type of a batch whose timestamps the broker set (kafkajs's TimestampTypes). */
const LOG_APPEND_TIME = 1;

/** A varlong as a number, exact up to 7 bytes (49 bits); longer ones as BigInt. */
function readVarLong(d: RecordDecoder): number | bigint {
  const start = d.offset;
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 7; i++) {
    const b = d.buffer[d.offset++]!;
    result += (b & 0x7f) * mul;
    if (b < 0x80) return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
    mul *= 128;
  }
  d.offset = start;
  return BigInt(d.readVarLong().toString());
}

/** base + delta as the decimal string kafkajs gives (its Long's toString). */
function plus(base: string, delta: number | bigint): string {
  const n = Number(base);
  if (typeof delta === 'number' && Number.isSafeInteger(n)) {
    const sum = n + delta;
    if (Number.isSafeInteger(sum)) return String(sum);
  }
  return String(BigInt(base) + BigInt(delta));
}

function readBytes(d: RecordDecoder): Buffer | null {
  const length = d.readVarInt();
  if (length === -1) return null;
  const b = d.buffer.subarray(d.offset, d.offset + length);
  d.offset += length;
  return b;
}

/** An own property, whatever its name (a header called `__proto__` included, as kafkajs's object spread makes it). */
function set(headers: Headers, name: string, v: Buffer | null | (Buffer | null)[]): void {
  if (name === '__proto__')
    Object.defineProperty(headers, name, { value: v, enumerable: true, writable: true, configurable: true });
  else headers[name] = v;
}

export function decodeRecord(d: RecordDecoder, batchContext: BatchContext): DecodedRecord {
  const {
    firstOffset,
    firstTimestamp,
    magicByte,
    isControlBatch = false,
    timestampType,
    maxTimestamp,
  } = batchContext;
  const attributes = d.readInt8();
  const timestampDelta = readVarLong(d);
  const timestamp =
    timestampType === LOG_APPEND_TIME && maxTimestamp ? maxTimestamp : plus(firstTimestamp, timestampDelta);
  const offset = plus(firstOffset, d.readVarInt());
  const key = readBytes(d);
  const value = readBytes(d);
  const headers: Headers = {};
  const count = d.readVarInt();
  for (let i = 0; i < count; i++) {
    const keyLength = d.readVarInt();
    const name = keyLength === -1 ? 'null' : d.buffer.toString('utf8', d.offset, d.offset + keyLength);
    if (keyLength > 0) d.offset += keyLength;
    const v = readBytes(d);
    const seen = Object.hasOwn(headers, name) ? headers[name] : undefined;
    // as kafkajs: a key that comes again makes an array of its values, in order
    if (seen === undefined) set(headers, name, v);
    else if (Array.isArray(seen)) seen.push(v);
    else set(headers, name, [seen, v]);
  }
  return {
    magicByte,
    attributes,
    timestamp,
    offset,
    key,
    value,
    headers,
    isControlRecord: isControlBatch,
    batchContext,
  };
}
