/**
 * A PostgreSQL client at the byte level, for tests that send what a driver never would
 * (malformed or oversized messages, a COPY left half-way) and read exactly what comes back.
 */
import { connect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as connectTls } from 'node:tls';
import { parseErrorFields, startupMessage } from '../../services/router/wire.ts';

export interface Received {
  type: string;
  body: Buffer;
}

export class RawClient {
  readonly received: Received[] = [];
  /** Resolves when the connection is closed (by either side). */
  readonly closed: Promise<void>;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(private socket: Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.listen(socket);
  }

  /** A TCP connection to `port`, nothing sent yet. */
  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Opens a connection, logs in with a startup message (trust) and waits for ReadyForQuery. */
  static async login(port: number, params: Record<string, string>): Promise<RawClient> {
    const c = await RawClient.open(port);
    c.write(startupMessage(params));
    await c.until('Z');
    return c;
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Sends an SSLRequest and returns the one-byte answer ('S' or 'N'). */
  async sslRequest(): Promise<string> {
    this.socket.removeAllListeners('data');
    this.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    const answer = await new Promise<string>((resolve) =>
      this.socket.once('data', (d: Buffer) => resolve(String.fromCharCode(d[0]!))),
    );
    return answer;
  }

  /** After an 'S': the TLS handshake over this connection; messages are then read from TLS. */
  async startTls(options: ConnectionOptions): Promise<void> {
    const raw = this.socket;
    const tls = connectTls({ ...options, socket: raw });
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', () => resolve());
      tls.once('error', reject);
    });
    this.socket = tls;
    this.listen(tls);
  }

  /** Waits for the next message of `type` not yet waited for (or the connection's close). */
  async until(type: string, timeoutMs = 5000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.received.findIndex((m) => m.type === type);
      if (i >= 0) return this.received.splice(0, i + 1)[i]!;
      if (this.socket.destroyed) throw new Error(`closed before a '${type}' message came`);
      if (Date.now() > deadline) throw new Error(`no '${type}' message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for an ErrorResponse and returns its fields (S, C, M, …). */
  async error(timeoutMs = 5000): Promise<Map<string, string>> {
    return parseErrorFields((await this.until('E', timeoutMs)).body);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private listen(socket: Socket): void {
    socket.on('error', () => {});
    socket.on('close', () => this.wake());
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < 1 + len) break;
        this.received.push({
          type: String.fromCharCode(this.buf[0]!),
          body: this.buf.subarray(5, 1 + len),
        });
        this.buf = this.buf.subarray(1 + len);
      }
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
