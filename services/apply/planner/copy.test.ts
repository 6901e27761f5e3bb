import { describe, expect, it } from 'vitest';
import { type CopyRow, planCopy } from './copy.ts';

const limits = { maxTransactions: 1000, maxBytes: 1 << 20 };

describe('planCopy', () => {
  it('gives rows of one version (node, commit time) one local transaction, wherever they are in the batch', () => {
    const rows: CopyRow[] = [
      { ts: 10n, node: 'vl-1', row: '(1,a)' },
      { ts: 20n, node: 'wa-1', row: '(2,b)' },
      { ts: 10n, node: 'vl-1', row: '(3,c)' },
      { ts: 30n, node: 'vl-1', row: '(4,d)' },
    ];
    const scripts = planCopy(rows, 'ins', limits);
    expect(scripts.map((s) => [s.node, s.rows, s.transactions])).toEqual([
      ['vl-1', 3, 2],
      ['wa-1', 1, 1],
    ]);
    const vl = scripts[0]!.sql;
    expect(vl.match(/begin;/g)).toHaveLength(2);
    expect(vl).toContain(`execute ins('{"(1,a)","(3,c)"}')`);
    expect(vl).toMatch(/execute brabant_copy_setup\('1970-01-01 00:00:00\.00001\+00'\)/);
  });

  it('gives rows of unknown version the oldest one (the Unix epoch)', () => {
    const [s] = planCopy([{ ts: null, node: 'vl-1', row: '(1,a)' }], 'ins', limits);
    expect(s!.sql).toContain(`brabant_copy_setup('1970-01-01 00:00:00+00')`);
  });

  it('cuts round trips by transactions and by bytes, never inside a transaction', () => {
    const rows = Array.from({ length: 10 }, (_, i) => ({
      ts: BigInt(i),
      node: 'n',
      row: `(${i},${'x'.repeat(100)})`,
    }));
    expect(
      planCopy(rows, 'ins', { maxTransactions: 3, maxBytes: 1 << 20 }).map((s) => s.transactions),
    ).toEqual([3, 3, 3, 1]);
    const bySize = planCopy(rows, 'ins', { maxTransactions: 100, maxBytes: 400 });
    expect(bySize.reduce((n, s) => n + s.rows, 0)).toBe(10);
    expect(bySize.every((s) => s.sql.startsWith('begin;') && s.sql.endsWith('commit;'))).toBe(true);
  });

  it('quotes values inside the array literal and the SQL string', () => {
    const [s] = planCopy([{ ts: 1n, node: 'n', row: `(1,"it's ""quoted"" \\\\")` }], 'ins', limits);
    expect(s!.sql).toContain(`'{"(1,\\"it''s \\"\\"quoted\\"\\" \\\\\\\\\\")"}'`);
  });
});
