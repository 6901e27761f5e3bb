import { describe, expect, it } from 'vitest';
import type { DecodedChange, RowChange } from '../../protocol/change-decoder.ts';
import { lsn } from '../../protocol/lsn.ts';
import { expandKeyChanges, wholeTransactionAt } from './source-transactions.ts';

function row(commit: number, index: number, last: boolean, over: Partial<RowChange> = {}): RowChange {
  return {
    kind: 'row',
    origin: { region: 'r', node: 'n' },
    tx: { xid: BigInt(commit), commitLsn: lsn(BigInt(commit)), commitTs: 1n, index, last },
    op: 'INSERT',
    schema: 'public',
    table: 't',
    key: { id: `${commit}.${index}` },
    before: null,
    after: { id: `${commit}.${index}` },
    ...over,
  };
}

describe('wholeTransactionAt', () => {
  const run: DecodedChange[] = [row(1, 0, false), row(1, 1, true), row(2, 0, false), row(2, 1, false)];

  it('finds a transaction held from its first event to its last', () => {
    const w = wholeTransactionAt(run, 0);
    expect(w?.end).toBe(2);
    expect(w?.rows.map((r) => r.key)).toEqual([{ id: '1.0' }, { id: '1.1' }]);
  });

  it('refuses one whose last event is not in the run, or that starts mid-way', () => {
    expect(wholeTransactionAt(run, 2)).toBeUndefined();
    expect(wholeTransactionAt(run, 1)).toBeUndefined();
  });

  it('refuses one with an event missing in the middle', () => {
    expect(wholeTransactionAt([row(3, 0, false), row(3, 2, true)], 0)).toBeUndefined();
  });
});

describe('expandKeyChanges', () => {
  it('splits an update that moves the key into a delete of the old key and an insert of the new', () => {
    const moved = row(1, 0, true, { op: 'UPDATE', key: { id: '1' }, after: { id: '2', v: 'x' } });
    expect(expandKeyChanges([moved]).map((c) => [c.op, c.key, c.after])).toEqual([
      ['DELETE', { id: '1' }, null],
      ['INSERT', { id: '2' }, { id: '2', v: 'x' }],
    ]);
  });

  it('leaves an update of the same key, and one that carries its old row (REPLICA IDENTITY FULL)', () => {
    const same = row(1, 0, true, { op: 'UPDATE', key: { id: '1' }, after: { id: '1', v: 'x' } });
    const full = row(1, 0, true, {
      op: 'UPDATE',
      key: { id: '1', v: 'a' },
      before: { id: '1', v: 'a' },
      after: { id: '1', v: 'b' },
    });
    expect(expandKeyChanges([same, full])).toEqual([same, full]);
  });
});
