import { describe, expect, it } from 'vitest';
import { DecodeError } from './binary-reader.ts';
import { decodePgoutput, undecodable } from './decoder.ts';
import { RawValue, UNCHANGED_TOAST } from './messages.ts';

/** Builds pgoutput bytes the way the server lays them out (test fixture writer). */
class W {
  private parts: Buffer[] = [];
  u8(v: number) {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  i16(v: number) {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.parts.push(b);
    return this;
  }
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }
  str(s: string) {
    this.parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  text(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u8(0x74).i32(b.length);
    this.parts.push(b);
    return this;
  }
  done() {
    return Buffer.concat(this.parts);
  }
}

const ch = (c: string) => c.charCodeAt(0);

describe('decodePgoutput', () => {
  it('decodes Begin and Commit', () => {
    const begin = new W().u8(ch('B')).u64(0x16b374d848n).u64(800_000_000_000_000n).u32(0xfffffff0).done();
    expect(decodePgoutput(begin)).toEqual({
      tag: 'begin',
      finalLsn: 0x16b374d848n,
      commitTime: 800_000_000_000_000n,
      xid: 0xfffffff0,
    });
    const commit = new W().u8(ch('C')).u8(0).u64(100n).u64(180n).u64(5n).done();
    expect(decodePgoutput(commit)).toEqual({
      tag: 'commit',
      flags: 0,
      commitLsn: 100n,
      endLsn: 180n,
      commitTime: 5n,
    });
  });

  it('decodes Relation with key flags, Origin, Type and Message', () => {
    const rel = new W()
      .u8(ch('R'))
      .u32(16385)
      .str('public')
      .str('items')
      .u8(ch('d'))
      .i16(2)
      .u8(1)
      .str('id')
      .u32(20)
      .i32(-1)
      .u8(0)
      .str('qty')
      .u32(23)
      .i32(-1)
      .done();
    expect(decodePgoutput(rel)).toEqual({
      tag: 'relation',
      oid: 16385,
      schema: 'public',
      name: 'items',
      replicaIdentity: 'default',
      columns: [
        { name: 'id', isKey: true, typeOid: 20, typeMod: -1 },
        { name: 'qty', isKey: false, typeOid: 23, typeMod: -1 },
      ],
    });
    expect(decodePgoutput(new W().u8(ch('O')).u64(42n).str('brabant_wa_1').done())).toEqual({
      tag: 'origin',
      originLsn: 42n,
      name: 'brabant_wa_1',
    });
    expect(decodePgoutput(new W().u8(ch('Y')).u32(99999).str('').str('mood').done())).toEqual({
      tag: 'type',
      oid: 99999,
      schema: 'pg_catalog',
      name: 'mood',
    });
    const msg = new W().u8(ch('M')).u8(1).u64(77n).str('brabant.heartbeat').i32(3).done();
    expect(decodePgoutput(Buffer.concat([msg, Buffer.from('abc')]))).toEqual({
      tag: 'message',
      transactional: true,
      lsn: 77n,
      prefix: 'brabant.heartbeat',
      content: Buffer.from('abc'),
    });
  });

  it('decodes tuples with text, null and unchanged TOAST values', () => {
    const ins = new W().u8(ch('I')).u32(7).u8(ch('N')).i16(3).text('1').u8(ch('n')).text('héllo').done();
    expect(decodePgoutput(ins)).toEqual({ tag: 'insert', relationOid: 7, after: ['1', null, 'héllo'] });
    const upd = new W()
      .u8(ch('U'))
      .u32(7)
      .u8(ch('K'))
      .i16(2)
      .text('1')
      .u8(ch('n'))
      .u8(ch('N'))
      .i16(2)
      .text('2')
      .u8(ch('u'))
      .done();
    expect(decodePgoutput(upd)).toEqual({
      tag: 'update',
      relationOid: 7,
      before: { kind: 'key', tuple: ['1', null] },
      after: ['2', UNCHANGED_TOAST],
    });
    const updNoKey = new W().u8(ch('U')).u32(7).u8(ch('N')).i16(1).text('x').done();
    expect(decodePgoutput(updNoKey)).toMatchObject({ before: null, after: ['x'] });
    const del = new W().u8(ch('D')).u32(7).u8(ch('O')).i16(1).text('9').done();
    expect(decodePgoutput(del)).toEqual({
      tag: 'delete',
      relationOid: 7,
      before: { kind: 'old', tuple: ['9'] },
    });
    const trunc = new W().u8(ch('T')).i32(2).u8(3).u32(7).u32(8).done();
    expect(decodePgoutput(trunc)).toEqual({
      tag: 'truncate',
      cascade: true,
      restartIdentity: true,
      relationOids: [7, 8],
    });
  });

  it('throws a typed error naming the offset for every truncation of a valid message', () => {
    const ins = new W().u8(ch('I')).u32(7).u8(ch('N')).i16(2).text('12345').u8(ch('n')).done();
    for (let cut = 0; cut < ins.length; cut++) {
      let err: unknown;
      try {
        decodePgoutput(ins.subarray(0, cut));
      } catch (e) {
        err = e;
      }
      expect(err, `cut at ${cut}`).toBeInstanceOf(DecodeError);
      expect((err as DecodeError).message).toMatch(/at byte \d+/);
    }
  });

  it('refuses corrupted bytes with a typed error', () => {
    expect(() => decodePgoutput(Buffer.from([0x21]))).toThrow(/unknown pgoutput message tag 0x21/);
    expect(() => decodePgoutput(new W().u8(ch('I')).u32(7).u8(ch('X')).done())).toThrow(DecodeError);
    expect(() => decodePgoutput(new W().u8(ch('I')).u32(7).u8(ch('N')).i16(1).u8(ch('z')).done())).toThrow(
      /unknown column kind 0x7a/,
    );
    expect(() =>
      decodePgoutput(new W().u8(ch('I')).u32(7).u8(ch('N')).i16(1).u8(ch('t')).i32(-5).done()),
    ).toThrow(/negative length/);
    expect(() => decodePgoutput(new W().u8(ch('C')).u8(0).u64(1n).u64(2n).u64(3n).u8(0).done())).toThrow(
      /trailing byte/,
    );
    expect(() =>
      decodePgoutput(new W().u8(ch('R')).u32(1).str('s').str('t').u8(ch('q')).i16(0).done()),
    ).toThrow(/unknown replica identity/);
  });

  it('keeps a value that is not UTF-8 as its bytes, never as replaced characters', () => {
    const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
    const insert = Buffer.concat([
      new W().u8(ch('I')).u32(7).u8(ch('N')).i16(2).text('ok').u8(0x74).i32(latin1.length).done(),
      latin1,
    ]);
    const msg = decodePgoutput(insert);
    expect(msg.tag === 'insert' && msg.after[0]).toBe('ok');
    const raw = msg.tag === 'insert' ? msg.after[1] : undefined;
    expect(raw).toBeInstanceOf(RawValue);
    expect(raw instanceof RawValue && [raw.bytes.equals(latin1), raw.reason]).toEqual([
      true,
      'not valid UTF-8',
    ]);
  });

  it('describes a refused message by its kind and relation oid, for the dead letter', () => {
    const truncated = new W().u8(ch('U')).u32(16400).u8(ch('N')).done();
    expect(() => decodePgoutput(truncated)).toThrow(DecodeError);
    expect(undecodable(truncated, 'truncated')).toMatchObject({
      tag: 'undecodable',
      kind: 'U',
      relationOid: 16400,
      reason: 'truncated',
    });
    expect(undecodable(Buffer.from('B'), 'short')).toMatchObject({ kind: 'B', relationOid: undefined });
  });
});
