/**
 * The parts of the PostgreSQL frontend/backend protocol (version 3.0) the router's proxy needs
 * (pure: bytes in, values out, and the other way). Grammar, from
 * https://www.postgresql.org/docs/15/protocol-message-formats.html:
 *
 *   startup phase (client → server, no type byte):
 *     Int32 length (itself included) · Int32 code · body
 *       code 196608 (3.0)     StartupMessage: (String name · String value)* · Byte 0
 *       code 80877103         SSLRequest      (answered with one byte: 'S' = TLS handshake next, 'N' = no TLS)
 *       code 80877104         GSSENCRequest   (answered 'N' too)
 *       code 80877102         CancelRequest:  Int32 backend pid · Int32 secret key
 *   every later message:
 *     Byte1 type · Int32 length (itself included, not the type) · body
 *
 * The proxy forwards messages as they come and reads only the few it acts on (ReadyForQuery,
 * ParameterStatus, ErrorResponse, authentication requests), so the scanner below skips bodies
 * it is not asked for without copying them.
 */
import { BrabantError } from '../runtime/errors.ts';

export const PROTOCOL_3 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** Longest message accepted in the startup phase, and longest body the scanner copies. */
const MAX_STARTUP = 10_000;
const MAX_KEPT_BODY = 64 * 1024 * 1024;

export type StartupPacket =
  | { kind: 'startup'; params: Map<string, string> }
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number };

/**
 * Reads a client's login: startup-phase packets (length-prefixed, no type byte), then the typed
 * messages of its authentication. Both are kept whole, so both have a small limit, checked on
 * the declared length before the bytes are waited for.
 */
export class StartupReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** Bytes received and not read yet. */
  get buffered(): number {
    return this.buf.length;
  }

  /** The next whole typed message, or undefined while more bytes are needed. */
  nextMessage(maxBody: number): { type: string; body: Buffer } | undefined {
    if (this.buf.length < 5) return undefined;
    const type = String.fromCharCode(this.buf[0]!);
    const len = this.buf.readInt32BE(1);
    if (len < 4) throw new BrabantError('PROTOCOL_ERROR', `message '${type}' with invalid length ${len}`);
    if (len - 4 > maxBody)
      throw new BrabantError(
        'PROTOCOL_ERROR',
        `message '${type}' of ${len - 4} bytes during login; the router accepts at most ${maxBody}`,
      );
    if (this.buf.length < 1 + len) return undefined;
    const body = this.buf.subarray(5, 1 + len);
    this.buf = this.buf.subarray(1 + len);
    return { type, body };
  }

  /** The next whole packet, or undefined while more bytes are needed. */
  next(): StartupPacket | undefined {
    if (this.buf.length < 4) return undefined;
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP)
      throw new BrabantError('PROTOCOL_ERROR', `startup packet of invalid length ${len}`);
    if (this.buf.length < len) return undefined;
    const packet = this.buf.subarray(0, len);
    this.buf = this.buf.subarray(len);
    return parseStartup(packet);
  }

  /** Bytes received after the last whole packet (the client may send its first query right behind). */
  rest(): Buffer {
    const r = this.buf;
    this.buf = Buffer.alloc(0);
    return r;
  }
}

export function parseStartup(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST) {
    if (packet.length !== 16)
      throw new BrabantError('PROTOCOL_ERROR', `cancel request of length ${packet.length}, expected 16`);
    return { kind: 'cancel', pid: packet.readInt32BE(8), secret: packet.readInt32BE(12) };
  }
  if (code >> 16 !== 3)
    throw new BrabantError(
      'PROTOCOL_ERROR',
      `unsupported protocol version ${code >> 16}.${code & 0xffff} (the router speaks 3.0)`,
    );
  const params = new Map<string, string>();
  let at = 8;
  for (;;) {
    if (at >= packet.length)
      throw new BrabantError('PROTOCOL_ERROR', 'startup message not terminated by a zero byte');
    if (packet[at] === 0) break;
    const name = cstring(packet, at);
    at = name.next;
    const value = cstring(packet, at);
    at = value.next;
    params.set(name.value, value.value);
  }
  return { kind: 'startup', params };
}

function cstring(b: Buffer, at: number): { value: string; next: number } {
  const end = b.indexOf(0, at);
  if (end < 0) throw new BrabantError('PROTOCOL_ERROR', `unterminated string at byte ${at}`);
  return { value: b.toString('utf8', at, end), next: end + 1 };
}

export interface Message {
  type: string;
  /** Its whole length on the wire: the type byte, the length field and the body. */
  length: number;
  /** The body, only for types the scanner was asked to keep. */
  body?: Buffer;
}

/**
 * Splits a byte stream of typed messages at message boundaries, whatever the chunking. Bodies
 * are kept only for the types in `keep`; the rest are skipped in place. A declared length (the
 * Int32 length field) over `limit.maxLength` is a PROTOCOL_ERROR as soon as the header is read.
 */
export class MessageScanner {
  private header = Buffer.alloc(5);
  private headerLen = 0;
  private type = '';
  private remaining = 0;
  private body: Buffer | undefined;
  private bodyAt = 0;
  /** The whole length of the current message (type byte included), once its header is read. */
  private length = 0;

  constructor(
    private readonly keep: ReadonlySet<string>,
    /** None for the node's answers (a DataRow is as large as the node makes it); `setting`: what sets it. */
    private readonly limit?: { maxLength: number; setting: string },
  ) {}

  /** True between messages (no partial message buffered). */
  get atBoundary(): boolean {
    return this.headerLen === 0 && this.remaining === 0 && this.body === undefined;
  }

  /** The type of the message begun and not yet complete (undefined between messages). */
  get partialType(): string | undefined {
    if (this.atBoundary) return undefined;
    return String.fromCharCode(this.header[0]!);
  }

  /** How many bytes of that message came so far (0 between messages). */
  get partialBytes(): number {
    if (this.atBoundary) return 0;
    return this.headerLen < 5 ? this.headerLen : this.length - this.remaining;
  }

  /** Calls `onMessage` for each message completed in `chunk`, with the offset in `chunk` just past it. */
  scan(chunk: Buffer, onMessage: (m: Message, end: number) => void): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.headerLen < 5) {
        const n = Math.min(5 - this.headerLen, chunk.length - at);
        chunk.copy(this.header, this.headerLen, at, at + n);
        this.headerLen += n;
        at += n;
        if (this.headerLen < 5) return;
        this.type = String.fromCharCode(this.header[0]!);
        const len = this.header.readInt32BE(1);
        if (len < 4)
          throw new BrabantError('PROTOCOL_ERROR', `message '${this.type}' with invalid length ${len}`);
        if (this.limit !== undefined && len > this.limit.maxLength)
          throw new BrabantError(
            'PROTOCOL_ERROR',
            `message '${this.type}' declares ${len} bytes, more than the router accepts (${this.limit.maxLength}, ${this.limit.setting})`,
          );
        this.remaining = len - 4;
        this.length = len + 1;
        if (this.keep.has(this.type)) {
          if (this.remaining > MAX_KEPT_BODY)
            throw new BrabantError(
              'PROTOCOL_ERROR',
              `message '${this.type}' of ${this.remaining} bytes is larger than the router accepts`,
            );
          this.body = Buffer.allocUnsafe(this.remaining);
          this.bodyAt = 0;
        }
      }
      const n = Math.min(this.remaining, chunk.length - at);
      if (this.body !== undefined) chunk.copy(this.body, this.bodyAt, at, at + n);
      this.bodyAt += n;
      this.remaining -= n;
      at += n;
      if (this.remaining === 0) {
        const m: Message =
          this.body === undefined
            ? { type: this.type, length: this.length }
            : { type: this.type, length: this.length, body: this.body };
        this.headerLen = 0;
        this.body = undefined;
        onMessage(m, at);
      }
    }
  }
}

/** One typed message: Byte1 type · Int32 length · body. */
export function message(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

const z = (s: string) => Buffer.from(`${s}\0`, 'utf8');

// --- server → client -------------------------------------------------------------------------

export const authenticationOk = (): Buffer => message('R', int32(0));

/** AuthenticationSASL: the mechanisms the server offers. */
export const authenticationSasl = (mechanisms: string[]): Buffer =>
  message('R', Buffer.concat([int32(10), ...mechanisms.map(z), Buffer.from([0])]));

export const authenticationSaslContinue = (data: string): Buffer =>
  message('R', Buffer.concat([int32(11), Buffer.from(data, 'utf8')]));

export const authenticationSaslFinal = (data: string): Buffer =>
  message('R', Buffer.concat([int32(12), Buffer.from(data, 'utf8')]));

export const parameterStatus = (name: string, value: string): Buffer =>
  message('S', Buffer.concat([z(name), z(value)]));

export const backendKeyData = (pid: number, secret: number): Buffer =>
  message('K', Buffer.concat([int32(pid), int32(secret)]));

export type TransactionStatus = 'I' | 'T' | 'E';

export const readyForQuery = (status: TransactionStatus): Buffer => message('Z', Buffer.from(status));

/** ErrorResponse: severity (ERROR or FATAL), SQLSTATE, message. */
export function errorResponse(severity: 'ERROR' | 'FATAL', sqlstate: string, text: string): Buffer {
  return message(
    'E',
    Buffer.concat([z(`S${severity}`), z(`V${severity}`), z(`C${sqlstate}`), z(`M${text}`), Buffer.from([0])]),
  );
}

// --- client → server -------------------------------------------------------------------------

export function startupMessage(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    int32(PROTOCOL_3),
    ...Object.entries(params).flatMap(([k, v]) => [z(k), z(v)]),
    Buffer.from([0]),
  ]);
  return Buffer.concat([int32(4 + body.length), body]);
}

export function cancelRequest(pid: number, secret: number): Buffer {
  return Buffer.concat([int32(16), int32(CANCEL_REQUEST), int32(pid), int32(secret)]);
}

export const query = (sql: string): Buffer => message('Q', z(sql));
export const terminate = (): Buffer => message('X', Buffer.alloc(0));
/** CopyFail: ends a COPY FROM STDIN with an error (the node rolls the COPY back). */
export const copyFail = (reason: string): Buffer => message('f', z(reason));
export const passwordMessage = (password: string): Buffer => message('p', z(password));

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return message('p', Buffer.concat([z(mechanism), int32(data.length), data]));
}

export const saslResponse = (data: Buffer): Buffer => message('p', data);

// --- reading bodies --------------------------------------------------------------------------

/** The fields of an ErrorResponse or NoticeResponse body, by field code (S, V, C, M, D, …). */
export function parseErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const code = String.fromCharCode(body[at]!);
    const s = cstring(body, at + 1);
    fields.set(code, s.value);
    at = s.next;
  }
  return fields;
}

/** SASLInitialResponse ('p'): String mechanism · Int32 length of the data (-1: none) · data. */
export function parseSaslInitialResponse(body: Buffer): { mechanism: string; data: Buffer } {
  const mechanism = cstring(body, 0);
  if (body.length < mechanism.next + 4)
    throw new BrabantError('PROTOCOL_ERROR', 'SASLInitialResponse without the length of its data');
  const len = body.readInt32BE(mechanism.next);
  const data = body.subarray(mechanism.next + 4);
  if (len === -1 ? data.length !== 0 : len !== data.length)
    throw new BrabantError(
      'PROTOCOL_ERROR',
      `SASLInitialResponse says ${len} bytes of data and carries ${data.length}`,
    );
  return { mechanism: mechanism.value, data };
}

export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const name = cstring(body, 0);
  return { name: name.value, value: cstring(body, name.next).value };
}

export type AuthRequest =
  | { kind: 'ok' }
  | { kind: 'cleartext' }
  | { kind: 'md5'; salt: Buffer }
  | { kind: 'sasl'; mechanisms: string[] }
  | { kind: 'sasl-continue'; data: Buffer }
  | { kind: 'sasl-final'; data: Buffer }
  | { kind: 'unsupported'; code: number };

export function parseAuthRequest(body: Buffer): AuthRequest {
  const code = body.readInt32BE(0);
  switch (code) {
    case 0:
      return { kind: 'ok' };
    case 3:
      return { kind: 'cleartext' };
    case 5:
      return { kind: 'md5', salt: body.subarray(4, 8) };
    case 10: {
      const mechanisms: string[] = [];
      let at = 4;
      while (at < body.length && body[at] !== 0) {
        const s = cstring(body, at);
        mechanisms.push(s.value);
        at = s.next;
      }
      return { kind: 'sasl', mechanisms };
    }
    case 11:
      return { kind: 'sasl-continue', data: body.subarray(4) };
    case 12:
      return { kind: 'sasl-final', data: body.subarray(4) };
    default:
      return { kind: 'unsupported', code };
  }
}
