import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ChangeDecoder } from './change-decoder.ts';
import { ENVELOPE_VERSION } from './envelope.ts';
import { FIXTURE_DIR } from './golden.ts';
import {
  decodeResyncHeaders,
  encodeResyncHeaders,
  forwardedHighContent,
  parseWatermark,
  RESYNC_ENVELOPE_VERSION,
  RESYNC_HIGH_PREFIX,
  RESYNC_LOW_PREFIX,
} from './resync.ts';

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const base = { resync: 'rs-1', schema: 'public', name: 't', chunk: 3 };
const columns = [
  { name: 'id', typeOid: 23, typeMod: -1, key: true },
  { name: 'v', typeOid: 25, typeMod: -1, key: false },
];

describe('resync watermarks', () => {
  it('reads a low and a high watermark', () => {
    expect(parseWatermark(RESYNC_LOW_PREFIX, json(base))).toEqual({ type: 'low', ...base });
    const high = { ...base, kind: 'rows', columns, rows: [['1764000000000000', null, '1', 'a']] };
    expect(parseWatermark(RESYNC_HIGH_PREFIX, json(high))).toEqual({ type: 'high', ...high });
    const tombs = { ...base, kind: 'tombstones', columns, rows: [[null, 'brabant_wa-1', '7']] };
    expect(parseWatermark(RESYNC_HIGH_PREFIX, json(tombs))).toMatchObject({ kind: 'tombstones' });
  });

  it.each([
    ['not JSON', Buffer.from('{"resync":'), /not JSON/],
    ['no resync id', json({ ...base, resync: '' }), /field resync/],
    ['a negative chunk', json({ ...base, chunk: -1 }), /field chunk/],
    ['an unknown kind', json({ ...base, kind: 'both', columns, rows: [] }), /kind "both"/],
    ['no columns', json({ ...base, kind: 'rows', columns: [], rows: [] }), /no columns/],
    ['a row one value short', json({ ...base, kind: 'rows', columns, rows: [[null, null, '1']] }), /row 0/],
    [
      'a tombstone with the whole row',
      json({ ...base, kind: 'tombstones', columns, rows: [[null, null, '1', 'a']] }),
      /row 0/,
    ],
    [
      'a version time that is not micros',
      json({ ...base, kind: 'rows', columns, rows: [['yesterday', null, '1', 'a']] }),
      /version time/,
    ],
    ['a number as value', json({ ...base, kind: 'rows', columns, rows: [[null, null, 1, 'a']] }), /row 0/],
  ])('refuses a high watermark with %s as UNDECODABLE, saying what', (_what, content, message) => {
    expect(() => parseWatermark(RESYNC_HIGH_PREFIX, content)).toThrow(
      expect.objectContaining({ code: 'UNDECODABLE', message: expect.stringMatching(message) }),
    );
  });

  it('forwards a high watermark without its rows', () => {
    const high = parseWatermark(RESYNC_HIGH_PREFIX, json({ ...base, kind: 'rows', columns, rows: [] }));
    if (high.type !== 'high') throw new Error('not high');
    expect(JSON.parse(forwardedHighContent(high, 5, 2).toString())).toEqual({
      ...base,
      kind: 'rows',
      sent: 5,
      dropped: 2,
    });
  });
});

describe('resync headers', () => {
  it('carry the row version, or oldest, and read back', () => {
    const mark = { id: 'rs-1', versionTs: 1_764_000_000_123_456n, versionNode: 'wa-1' };
    expect(encodeResyncHeaders(mark)).toEqual({
      'brabant.resync': 'rs-1',
      'brabant.version-ts': '1764000000123456',
      'brabant.version-node': 'wa-1',
    });
    expect(decodeResyncHeaders(encodeResyncHeaders(mark))).toEqual(mark);
    const oldest = { ...mark, versionTs: null };
    const headers = Object.fromEntries(
      Object.entries(encodeResyncHeaders(oldest)).map(([k, v]) => [k, Buffer.from(v)]),
    );
    expect(decodeResyncHeaders(headers)).toEqual(oldest);
    expect(decodeResyncHeaders({ 'brabant.commit-lsn': '0/1' })).toBeUndefined();
  });

  it('refuse a resync mark without its version', () => {
    expect(() => decodeResyncHeaders({ 'brabant.resync': 'rs-1', 'brabant.version-node': 'x' })).toThrow(
      /lacks its brabant.version-ts/,
    );
    expect(() =>
      decodeResyncHeaders({
        'brabant.resync': 'rs-1',
        'brabant.version-ts': 'soon',
        'brabant.version-node': 'x',
      }),
    ).toThrow(/version-ts="soon"/);
  });
});

describe('resync records on the wire', () => {
  const fixture = (name: string, ext: string) => readFileSync(new URL(`${name}.${ext}`, FIXTURE_DIR));
  const decoder = (name: string) =>
    new ChangeDecoder({ schemaById: async () => fixture(name, 'avsc').toString() });

  it('carry envelope 2, so a reader of envelope 1 refuses them instead of applying a new insert', () => {
    for (const name of ['table-resync-insert-r2', 'table-resync-delete-r2']) {
      // the envelope is the body's first field: a zigzag varint right after the framing
      expect(fixture(name, 'bin')[5]).toBe(RESYNC_ENVELOPE_VERSION * 2);
      expect(RESYNC_ENVELOPE_VERSION).toBeGreaterThan(ENVELOPE_VERSION);
    }
  });

  it('are refused without their headers (their version would be lost)', async () => {
    const name = 'table-resync-insert-r2';
    await expect(decoder(name).decode(fixture(name, 'bin'))).rejects.toMatchObject({
      code: 'UNDECODABLE',
      message: expect.stringMatching(/envelope version 2 .*without its resync headers/),
    });
  });
});
