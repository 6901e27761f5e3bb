import { describe, expect, it } from 'vitest';
import { decodePosition, encodeHeaders, parseCommitLsnHeader } from './headers.ts';
import { lsn } from './lsn.ts';

describe('record headers', () => {
  it('carry the position in PostgreSQL’s LSN form and read back what they wrote', () => {
    const pos = { commitLsn: lsn(0x16b3748n + (3n << 32n)), index: 7 };
    const h = encodeHeaders(pos, 1);
    expect(h).toEqual({ 'brabant.commit-lsn': '3/16B3748', 'brabant.index': '7', 'brabant.envelope': '1' });
    expect(decodePosition(h)).toEqual(pos);
    // as kafkajs hands them to a consumer: Buffers
    const raw = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Buffer.from(v)]));
    expect(decodePosition(raw)).toEqual(pos);
  });

  it('read the decimal commit LSN of older builds', () => {
    expect(parseCommitLsnHeader('23770952')).toBe(23770952n);
    expect(decodePosition({ 'brabant.commit-lsn': '100', 'brabant.index': '0' })).toEqual({
      commitLsn: 100n,
      index: 0,
    });
  });

  it('say when a record has no position, and refuse malformed ones by name', () => {
    expect(decodePosition({})).toBeUndefined();
    expect(decodePosition(undefined)).toBeUndefined();
    expect(() => decodePosition({ 'brabant.commit-lsn': 'x/y', 'brabant.index': '1' })).toThrow(
      /brabant.commit-lsn="x\/y" is not an LSN/,
    );
    expect(() => decodePosition({ 'brabant.commit-lsn': '0/1', 'brabant.index': '-1' })).toThrow(
      /brabant.index="-1" is not a number/,
    );
  });
});
