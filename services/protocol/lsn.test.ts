import { describe, expect, it } from 'vitest';
import { compareLsn, comparePosition, formatLsn, lsn, maxLsn, parseLsn } from './lsn.ts';

describe('Lsn', () => {
  it('round-trips the text form', () => {
    for (const text of ['0/0', '0/16B3748', '16/B374D848', 'FFFFFFFF/FFFFFFFF']) {
      expect(formatLsn(parseLsn(text))).toBe(text);
    }
    expect(parseLsn('16/B374D848')).toBe(0x16b374d848n);
  });

  it('refuses malformed text with a typed error', () => {
    for (const bad of ['', '0', '0/', '/0', 'G/0', '123456789/0', '0/0/0']) {
      expect(() => parseLsn(bad)).toThrow(/is not an LSN/);
    }
    expect(() => lsn(-1n)).toThrow();
    expect(() => lsn(1n << 64n)).toThrow();
  });

  it('orders LSNs and positions', () => {
    expect(compareLsn(parseLsn('0/10'), parseLsn('0/9'))).toBe(1);
    expect(compareLsn(parseLsn('1/0'), parseLsn('0/FFFFFFFF'))).toBe(1);
    expect(maxLsn(lsn(5n), lsn(7n))).toBe(7n);
    expect(comparePosition({ commitLsn: lsn(7n), index: 2 }, { commitLsn: lsn(7n), index: 3 })).toBe(-1);
    expect(comparePosition({ commitLsn: lsn(8n), index: 0 }, { commitLsn: lsn(7n), index: 9 })).toBe(1);
    expect(comparePosition({ commitLsn: lsn(8n), index: 1 }, { commitLsn: lsn(8n), index: 1 })).toBe(0);
  });
});
