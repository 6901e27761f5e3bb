/**
 * Kafka requests written into one buffer each, byte for byte what kafkajs 2.2.4 writes.
 *
 * `frameRequest`: a request's size and header in front of its body. kafkajs copies every request
 * twice for that, into buffers it grows by doubling (zero-filled): a 4 MB send took 16 MB.
 *
 * `encodeProduceRequest`: a Produce request (versions 3–7: the same body) written into one buffer, byte for byte what
 * kafkajs 2.2.4 writes for uncompressed records without timestamps of their own (the records of
 * capture and of apply's side topics). kafkajs builds each record, each header and each varint
 * as a buffer of its own and copies every record's bytes four times on the way to the socket;
 * capture's W1/W5 profiles had that encoding at ~30 % of its time. Pure: no kafkajs, no I/O
 * (services/runtime/kafkajs-patch.ts puts it in front of kafkajs's own encoder).
 *
 * Layout (Kafka protocol, Produce v3 request; RecordBatch v2 of the record format):
 *   transactional_id NULLABLE_STRING, acks INT16, timeout INT32,
 *   [topic STRING, [partition INT32, record_set_size INT32, RecordBatch]]
 *   RecordBatch: base_offset INT64 = 0, batch_length INT32, partition_leader_epoch INT32 = 0,
 *     magic INT8 = 2, crc UINT32 (CRC-32C of what follows), attributes INT16, last_offset_delta
 *     INT32, first_timestamp INT64, max_timestamp INT64, producer_id INT64, producer_epoch INT16,
 *     base_sequence INT32, [Record] (INT32 count)
 *   Record: length VARINT, attributes INT8 = 0, timestamp_delta VARLONG = 0, offset_delta VARINT,
 *     key VARINT-bytes, value VARINT-bytes, [header key VARINT-string, value VARINT-bytes] (VARINT count)
 */

export type ProduceValue = Buffer | string | null | undefined;

export interface ProduceMessage {
  key?: ProduceValue;
  value: ProduceValue;
  headers?: Record<string, ProduceValue | ProduceValue[]>;
  /** Set: not written here (kafkajs's own encoder takes the request). */
  timestamp?: unknown;
}

export interface ProduceRequest {
  transactionalId: string | null;
  acks: number;
  timeout: number;
  producerId: bigint;
  producerEpoch: number;
  /** Transactional batches carry the transaction bit in their attributes. */
  transactional: boolean;
  /** The batches' first and max timestamp (kafkajs: Date.now() when no record has its own). */
  now: number;
  topicData: {
    topic: string;
    partitions: { partition: number; firstSequence?: number; messages: ProduceMessage[] }[];
  }[];
}

/** Whether `encodeProduceRequest` writes this request as kafkajs would (else kafkajs's encoder does). */
export function encodable(compression: number, topicData: ProduceRequest['topicData']): boolean {
  if (compression !== 0) return false;
  for (const t of topicData)
    for (const p of t.partitions) for (const m of p.messages) if (m.timestamp != null) return false;
  return true;
}

const TRANSACTIONAL_BIT = 16;
const MAGIC = 2;
/** From attributes to the first record: INT16 + INT32 + 3 × INT64 + INT16 + INT32 + INT32 (count). */
const BATCH_BODY_HEAD = 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;
/** base_offset, batch_length, partition_leader_epoch, magic, crc. */
const BATCH_HEAD = 8 + 4 + 4 + 1 + 4;

function zigzag(v: number): number {
  return ((v << 1) ^ (v >> 31)) >>> 0;
}

function varIntSize(v: number): number {
  let u = zigzag(v);
  let n = 1;
  while (u >= 0x80) {
    u >>>= 7;
    n++;
  }
  return n;
}

/** A key, value or header value as bytes: Buffers as they are, the rest as kafkajs does (String(v), UTF-8). */
function bytesOf(v: ProduceValue): Buffer | null {
  if (v === null || v === undefined) return null;
  return Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8');
}

function bytesFieldSize(b: Buffer | null): number {
  return b === null ? 1 : varIntSize(b.length) + b.length;
}

interface PreparedRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: [Buffer, Buffer | null][];
  bodySize: number;
}

function prepare(m: ProduceMessage, offsetDelta: number): PreparedRecord {
  const key = bytesOf(m.key);
  const value = bytesOf(m.value);
  const headers: [Buffer, Buffer | null][] = [];
  if (m.headers !== undefined)
    for (const k of Object.keys(m.headers)) {
      const h = m.headers[k];
      const name = Buffer.from(k, 'utf8');
      if (Array.isArray(h)) for (const one of h) headers.push([name, bytesOf(one)]);
      else headers.push([name, bytesOf(h)]);
    }
  let headersSize = varIntSize(headers.length);
  for (const [k, v] of headers) headersSize += varIntSize(k.length) + k.length + bytesFieldSize(v);
  // attributes (1) + timestamp delta 0 as a varlong (1)
  const bodySize = 2 + varIntSize(offsetDelta) + bytesFieldSize(key) + bytesFieldSize(value) + headersSize;
  return { key, value, headers, bodySize };
}

class Writer {
  offset = 0;
  constructor(readonly buf: Buffer) {}

  varInt(v: number): void {
    let u = zigzag(v);
    while (u >= 0x80) {
      this.buf[this.offset++] = (u & 0x7f) | 0x80;
      u >>>= 7;
    }
    this.buf[this.offset++] = u;
  }

  bytes(b: Buffer | null): void {
    if (b === null) {
      this.varInt(-1);
      return;
    }
    this.varInt(b.length);
    b.copy(this.buf, this.offset);
    this.offset += b.length;
  }

  int8(v: number): void {
    this.offset = this.buf.writeInt8(v, this.offset);
  }
  int16(v: number): void {
    this.offset = this.buf.writeInt16BE(v, this.offset);
  }
  int32(v: number): void {
    this.offset = this.buf.writeInt32BE(v, this.offset);
  }
  int64(v: bigint): void {
    this.offset = this.buf.writeBigInt64BE(v, this.offset);
  }
  string(s: Buffer | null): void {
    if (s === null) this.int16(-1);
    else {
      this.int16(s.length);
      s.copy(this.buf, this.offset);
      this.offset += s.length;
    }
  }
}

/**
 * The request body (what follows the request header) in one buffer. `crc32c` is the checksum
 * kafkajs uses (CRC-32C, unsigned), passed in to keep this module free of kafkajs.
 */
export function encodeProduceRequest(r: ProduceRequest, crc32c: (b: Buffer) => number): Buffer {
  const txId = r.transactionalId === null ? null : Buffer.from(r.transactionalId, 'utf8');
  let size = 2 + (txId?.length ?? 0) + 2 + 4 + 4;
  const topics = r.topicData.map((t) => {
    const name = Buffer.from(t.topic, 'utf8');
    size += 2 + name.length + 4;
    const partitions = t.partitions.map((p) => {
      const records = p.messages.map(prepare);
      let recordsSize = 0;
      for (const x of records) recordsSize += varIntSize(x.bodySize) + x.bodySize;
      const batchSize = BATCH_HEAD + BATCH_BODY_HEAD + recordsSize;
      size += 4 + 4 + batchSize;
      return { p, records, batchSize };
    });
    return { name, partitions };
  });
  const w = new Writer(Buffer.allocUnsafe(size));
  w.string(txId);
  w.int16(r.acks);
  w.int32(r.timeout);
  w.int32(topics.length);
  const now = BigInt(r.now);
  for (const t of topics) {
    w.string(t.name);
    w.int32(t.partitions.length);
    for (const { p, records, batchSize } of t.partitions) {
      w.int32(p.partition);
      w.int32(batchSize);
      w.int64(0n);
      w.int32(batchSize - 12); // what follows base_offset and batch_length
      w.int32(0);
      w.int8(MAGIC);
      const crcAt = w.offset;
      w.offset += 4;
      const bodyAt = w.offset;
      w.int16(r.transactional ? TRANSACTIONAL_BIT : 0);
      w.int32(records.length - 1);
      w.int64(now);
      w.int64(now);
      w.int64(r.producerId);
      w.int16(r.producerEpoch);
      w.int32(p.firstSequence ?? 0);
      w.int32(records.length);
      records.forEach((x, i) => {
        w.varInt(x.bodySize);
        w.int8(0);
        w.buf[w.offset++] = 0; // timestamp delta: every record at the batch's timestamp
        w.varInt(i);
        w.bytes(x.key);
        w.bytes(x.value);
        w.varInt(x.headers.length);
        for (const [k, v] of x.headers) {
          w.bytes(k);
          w.bytes(v);
        }
      });
      w.buf.writeUInt32BE(crc32c(w.buf.subarray(bodyAt, w.offset)), crcAt);
    }
  }
  if (w.offset !== size) throw new Error(`produce request encoding: wrote ${w.offset} bytes of ${size}`);
  return w.buf;
}

/**
 * A request as it goes to the socket: INT32 size of the rest, then api_key INT16, api_version
 * INT16, correlation_id INT32, client_id NULLABLE_STRING (request header v1), then the body.
 */
export function frameRequest(
  h: { apiKey: number; apiVersion: number; correlationId: number; clientId: string | null },
  body: Buffer,
): Buffer {
  const client = h.clientId === null ? null : Buffer.from(h.clientId, 'utf8');
  const size = 4 + 2 + 2 + 4 + 2 + (client?.length ?? 0) + body.length;
  const w = new Writer(Buffer.allocUnsafe(size));
  w.int32(size - 4);
  w.int16(h.apiKey);
  w.int16(h.apiVersion);
  w.int32(h.correlationId);
  w.string(client);
  body.copy(w.buf, w.offset);
  return w.buf;
}
