/**
 * Big-endian reader over one pgoutput message. Every read checks bounds and throws a typed
 * DecodeError that says at which offset and what was expected, so bad bytes never crash the
 * process with a RangeError or yield garbage.
 */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  readonly code = 'PGOUTPUT_DECODE';
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at byte ${offset}`);
  }
}

export class BinaryReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new DecodeError(
        `truncated message: wanted ${n} byte(s) for ${what}, ${this.remaining} left`,
        this.pos,
      );
    }
  }

  uint8(what: string): number {
    this.need(1, what);
    return this.buf.readUInt8(this.pos++);
  }

  int16(what: string): number {
    this.need(2, what);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  int32(what: string): number {
    this.need(4, what);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(what: string): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  int64(what: string): bigint {
    this.need(8, what);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A NUL-terminated UTF-8 string. */
  cstring(what: string): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new DecodeError(`unterminated string for ${what}`, this.pos);
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  bytes(n: number, what: string): Buffer {
    if (n < 0) throw new DecodeError(`negative length ${n} for ${what}`, this.pos);
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  end(what: string): void {
    if (this.remaining !== 0)
      throw new DecodeError(`${this.remaining} unexpected trailing byte(s) after ${what}`, this.pos);
  }
}
