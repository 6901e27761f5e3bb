import { describe, expect, it } from 'vitest';
import { isBrabantError } from '../runtime/errors.ts';
import {
  authenticationOk,
  cancelRequest,
  errorResponse,
  MessageScanner,
  parameterStatus,
  parseAuthRequest,
  parseErrorFields,
  parseParameterStatus,
  parseSaslInitialResponse,
  query,
  readyForQuery,
  StartupReader,
  startupMessage,
} from './wire.ts';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isBrabantError(err) ? err.code : 'foreign';
  }
  return undefined;
}

describe('startup packets', () => {
  it('reads a startup message split anywhere, then an SSL request and a cancel request', () => {
    const bytes = Buffer.concat([
      Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]), // SSLRequest
      startupMessage({ user: 'u', database: 'app', application_name: 'x' }),
    ]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = new StartupReader();
      r.push(bytes.subarray(0, cut));
      const got = [];
      for (let p = r.next(); p !== undefined; p = r.next()) got.push(p);
      r.push(bytes.subarray(cut));
      for (let p = r.next(); p !== undefined; p = r.next()) got.push(p);
      expect(got).toEqual([
        { kind: 'ssl' },
        {
          kind: 'startup',
          params: new Map([
            ['user', 'u'],
            ['database', 'app'],
            ['application_name', 'x'],
          ]),
        },
      ]);
    }
    const c = new StartupReader();
    c.push(cancelRequest(1234, -5));
    expect(c.next()).toEqual({ kind: 'cancel', pid: 1234, secret: -5 });
  });

  it('keeps the bytes a client sent right behind its startup message', () => {
    const r = new StartupReader();
    r.push(Buffer.concat([startupMessage({ user: 'u' }), query('select 1')]));
    expect(r.next()?.kind).toBe('startup');
    expect(r.rest()).toEqual(query('select 1'));
  });

  it('refuses bad lengths, other protocol versions and unterminated parameters with PROTOCOL_ERROR', () => {
    const bad = (b: Buffer) => () => {
      const r = new StartupReader();
      r.push(b);
      return r.next();
    };
    expect(codeOf(bad(Buffer.from([0, 0, 0, 2, 0, 0, 0, 0])))).toBe('PROTOCOL_ERROR');
    expect(codeOf(bad(Buffer.from([0x7f, 0, 0, 0])))).toBe('PROTOCOL_ERROR');
    expect(codeOf(bad(Buffer.from([0, 0, 0, 8, 0, 2, 0, 0])))).toBe('PROTOCOL_ERROR'); // protocol 2.0
    expect(codeOf(bad(Buffer.from([0, 0, 0, 11, 0, 3, 0, 0, 0x75, 0, 0x76])))).toBe('PROTOCOL_ERROR');
    expect(codeOf(bad(Buffer.from([0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1])))).toBe(
      'PROTOCOL_ERROR',
    ); // short cancel
  });
});

describe('message scanner', () => {
  const stream = Buffer.concat([
    authenticationOk(),
    parameterStatus('TimeZone', 'UTC'),
    errorResponse('ERROR', '42P01', 'relation "x" does not exist'),
    readyForQuery('T'),
  ]);

  it('finds every message and keeps only the bodies asked for, whatever the chunking', () => {
    for (const size of [1, 2, 3, 5, 7, 64]) {
      const s = new MessageScanner(new Set(['Z', 'S']));
      const seen: { type: string; body?: string; end: number; chunk: number }[] = [];
      for (let at = 0, i = 0; at < stream.length; at += size, i++)
        s.scan(stream.subarray(at, at + size), (m, end) =>
          seen.push({ type: m.type, body: m.body?.toString('latin1'), end: at + end, chunk: i }),
        );
      expect(seen.map((m) => [m.type, m.body])).toEqual([
        ['R', undefined],
        ['S', 'TimeZone\0UTC\0'],
        ['E', undefined],
        ['Z', 'T'],
      ]);
      // `end` is just past each message in the stream
      expect(seen.at(-1)!.end).toBe(stream.length);
      expect(s.atBoundary).toBe(true);
    }
  });

  it('reads error fields, parameter status and authentication requests', () => {
    const e = errorResponse('FATAL', '08006', 'lost');
    expect(parseErrorFields(e.subarray(5))).toEqual(
      new Map([
        ['S', 'FATAL'],
        ['V', 'FATAL'],
        ['C', '08006'],
        ['M', 'lost'],
      ]),
    );
    expect(parseParameterStatus(parameterStatus('a', 'b').subarray(5))).toEqual({ name: 'a', value: 'b' });
    const sasl = Buffer.concat([Buffer.from([0, 0, 0, 10]), Buffer.from('SCRAM-SHA-256\0\0')]);
    expect(parseAuthRequest(sasl)).toEqual({ kind: 'sasl', mechanisms: ['SCRAM-SHA-256'] });
    expect(parseAuthRequest(Buffer.from([0, 0, 0, 5, 1, 2, 3, 4]))).toEqual({
      kind: 'md5',
      salt: Buffer.from([1, 2, 3, 4]),
    });
    expect(parseAuthRequest(Buffer.from([0, 0, 0, 7]))).toEqual({ kind: 'unsupported', code: 7 });
  });

  it('refuses a message length below 4 with PROTOCOL_ERROR', () => {
    const s = new MessageScanner(new Set());
    expect(codeOf(() => s.scan(Buffer.from([0x51, 0, 0, 0, 3]), () => {}))).toBe('PROTOCOL_ERROR');
  });

  it('refuses a declared length over its limit as soon as the header is read, naming what sets it', () => {
    const s = new MessageScanner(new Set(), { maxLength: 1024, setting: 'BRABANT_ROUTER_MAX_MESSAGE_BYTES' });
    const header = Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]); // 'Q' declaring 2 GiB, no body sent
    expect(() => s.scan(header, () => {})).toThrow(
      /declares 2147483647 bytes.*1024, BRABANT_ROUTER_MAX_MESSAGE_BYTES/,
    );
    const ok = new MessageScanner(new Set(), { maxLength: 1024, setting: 'x' });
    let seen = 0;
    ok.scan(query('x'.repeat(1000)), () => seen++);
    expect(seen).toBe(1);
  });

  it('tells the type and size so far of a message cut short', () => {
    const s = new MessageScanner(new Set());
    const q = query('select 1');
    s.scan(q.subarray(0, 3), () => {});
    expect([s.partialType, s.partialBytes]).toEqual(['Q', 3]);
    s.scan(q.subarray(3, 8), () => {});
    expect([s.partialType, s.partialBytes]).toEqual(['Q', 8]);
    s.scan(q.subarray(8), () => {});
    expect([s.partialType, s.partialBytes, s.atBoundary]).toEqual([undefined, 0, true]);
  });
});

describe('authentication messages', () => {
  it('reads typed login messages whole, refusing a declared length over the limit before its bytes come', () => {
    const r = new StartupReader();
    const p = Buffer.concat([Buffer.from('p'), Buffer.from([0, 0, 0, 9]), Buffer.from('abcde')]);
    r.push(p.subarray(0, 6));
    expect(r.nextMessage(100)).toBeUndefined();
    r.push(p.subarray(6));
    expect(r.nextMessage(100)).toEqual({ type: 'p', body: Buffer.from('abcde') });
    const big = new StartupReader();
    big.push(Buffer.from([0x70, 0x10, 0, 0, 0]));
    expect(() => big.nextMessage(65_535)).toThrow(/during login; the router accepts at most 65535/);
  });

  it('reads SASLInitialResponse: mechanism, the length of its data, the data', () => {
    const body = (len: number, data: string) =>
      Buffer.concat([
        Buffer.from('SCRAM-SHA-256\0'),
        Buffer.from([len >> 24, len >> 16, len >> 8, len]),
        Buffer.from(data),
      ]);
    expect(parseSaslInitialResponse(body(3, 'n,,'))).toEqual({
      mechanism: 'SCRAM-SHA-256',
      data: Buffer.from('n,,'),
    });
    expect(parseSaslInitialResponse(body(-1, ''))).toEqual({
      mechanism: 'SCRAM-SHA-256',
      data: Buffer.alloc(0),
    });
    for (const bad of [body(4, 'n,,'), body(-1, 'x'), Buffer.from('SCRAM'), Buffer.from('SCRAM-SHA-256\0\0')])
      expect(codeOf(() => parseSaslInitialResponse(bad))).toBe('PROTOCOL_ERROR');
  });
});
