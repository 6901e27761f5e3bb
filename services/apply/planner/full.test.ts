import { describe, expect, it } from 'vitest';
import type { RowChange } from '../../protocol/change-decoder.ts';
import { lsn } from '../../protocol/lsn.ts';
import { splitBatches } from './full.ts';

const change = (table: string, op: RowChange['op'], id?: number): RowChange => ({
  kind: 'row',
  origin: { region: 'wallonie', node: 'wa-1' },
  tx: { commitLsn: lsn(100n), commitTs: 1n, xid: 700n, index: 0, last: false },
  op,
  schema: 'public',
  table,
  key: op === 'TRUNCATE' ? null : id === undefined ? {} : { id: String(id) },
  before: null,
  after: op === 'DELETE' || op === 'TRUNCATE' ? null : { id: String(id ?? 0) },
});

const shape = (changes: RowChange[]) => {
  const r = splitBatches(changes);
  return {
    batches: r.batches.map((b) => b.map((c) => `${c.table}${c.key?.id ?? ''}`)),
    keysRepeat: r.keysRepeat,
    truncates: r.truncates,
  };
};

describe('splitBatches', () => {
  it('ends a batch where the table changes, and knows the keys of a TPC-B transaction do not repeat', () => {
    const tpcb = [
      change('accounts', 'UPDATE', 7),
      change('tellers', 'UPDATE', 3),
      change('branches', 'UPDATE', 1),
      change('history', 'INSERT'),
    ];
    expect(shape(tpcb)).toEqual({
      batches: [['accounts7'], ['tellers3'], ['branches1'], ['history']],
      keysRepeat: false,
      truncates: false,
    });
  });

  it('ends a batch at a key that comes again, and says so', () => {
    expect(
      shape([change('items', 'INSERT', 1), change('items', 'INSERT', 2), change('items', 'UPDATE', 1)]),
    ).toEqual({ batches: [['items1', 'items2'], ['items1']], keysRepeat: true, truncates: false });
    // the same key in another table is another row
    expect(shape([change('a', 'UPDATE', 1), change('b', 'UPDATE', 1)]).keysRepeat).toBe(false);
    // a key met again after another table's batch still repeats
    expect(
      shape([change('a', 'UPDATE', 1), change('b', 'UPDATE', 1), change('a', 'DELETE', 1)]).keysRepeat,
    ).toBe(true);
  });

  it('does not count rows without a key as repeats (nothing of them is looked up)', () => {
    const r = shape([change('log', 'INSERT'), change('log', 'INSERT')]);
    expect(r.keysRepeat).toBe(false);
    expect(r.batches).toEqual([['log'], ['log']]);
  });

  it('puts a TRUNCATE in a batch of its own', () => {
    expect(shape([change('a', 'INSERT', 1), change('a', 'TRUNCATE'), change('a', 'INSERT', 2)])).toEqual({
      batches: [['a1'], ['a'], ['a2']],
      keysRepeat: false,
      truncates: true,
    });
  });
});
