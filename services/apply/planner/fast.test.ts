import { describe, expect, it } from 'vitest';
import type { Row, RowChange } from '../../protocol/change-decoder.ts';
import { lsn, ZERO_LSN } from '../../protocol/lsn.ts';
import { UNCHANGED } from '../../protocol/table-schema.ts';
import { PreparedStatements } from '../executor/prepared-statements.ts';
import { testTable } from '../target-table.fixture.ts';
import { planFast } from './fast.ts';

const items = testTable('items');
const other = testTable('other');
const pair = testTable('pair', ['id', 'v']);

type Op = RowChange['op'];
function tx(rows: { t: typeof items; op: Op; id: string; v?: string | typeof UNCHANGED }[]): RowChange[] {
  return rows.map((r, index) => ({
    kind: 'row',
    origin: { region: 'wallonie', node: 'wa-1' },
    tx: { xid: 1n, commitLsn: lsn(100n), commitTs: 1n, index, last: index === rows.length - 1 },
    op: r.op,
    schema: 'public',
    table: r.t.name,
    key: (r.t.primaryKey.length === 2 ? { id: r.id, v: String(r.v) } : { id: r.id }) as Record<
      string,
      string
    >,
    before: null,
    after: (r.op === 'DELETE' ? null : r.v === undefined ? { id: r.id } : { id: r.id, v: r.v }) as Row | null,
  }));
}

/** The statements of the one planned transaction, without its origin setup. */
function statementsOf(changes: RowChange[]): string[] {
  const byName = new Map([items, other, pair].map((t) => [t.name, t]));
  const { txs } = planFast(changes, 0, {
    applied: ZERO_LSN,
    limit: 10,
    chunkRows: 100,
    statements: new PreparedStatements({ query: async () => undefined }),
    roident: 1,
    table: (c) => byName.get(c.table),
  });
  expect(txs).toHaveLength(1);
  return (txs[0]!.script.match(/execute brabant_fast_\d+\([^)]*\)/g) ?? []).slice(0, -1);
}

describe('planFast: runs of one table, operation and column set with distinct keys, one statement each', () => {
  it('puts consecutive rows of one table, operation and columns in one statement', () => {
    const s = statementsOf(tx([1, 2, 3].map((i) => ({ t: items, op: 'INSERT', id: String(i), v: 'x' }))));
    expect(s).toHaveLength(1);
    expect(s[0]).toContain(`'{"1","2","3"}'`);
  });

  it('starts a new statement at a repeated key, another table, another operation or another column set', () => {
    const cases: [string, Parameters<typeof tx>[0], number][] = [
      [
        'insert then update of a key',
        [
          { t: items, op: 'INSERT', id: '1', v: 'a' },
          { t: items, op: 'UPDATE', id: '1', v: 'b' },
        ],
        2,
      ],
      [
        'a key updated twice',
        [
          { t: items, op: 'UPDATE', id: '1', v: 'a' },
          { t: items, op: 'UPDATE', id: '1', v: 'b' },
        ],
        2,
      ],
      [
        'another table',
        [
          { t: items, op: 'INSERT', id: '1', v: 'a' },
          { t: other, op: 'INSERT', id: '2', v: 'a' },
        ],
        2,
      ],
      [
        'another column set (an unchanged column), then the same again',
        [
          { t: items, op: 'UPDATE', id: '1', v: 'a' },
          { t: items, op: 'UPDATE', id: '2', v: UNCHANGED },
          { t: items, op: 'UPDATE', id: '3', v: UNCHANGED },
        ],
        2,
      ],
    ];
    for (const [what, rows, statements] of cases)
      expect(statementsOf(tx(rows)), what).toHaveLength(statements);
  });

  it('tells keys of several columns apart by all of them', () => {
    const s = statementsOf(
      tx([
        { t: pair, op: 'INSERT', id: '1', v: 'a' },
        { t: pair, op: 'INSERT', id: '1', v: 'b' },
        { t: pair, op: 'INSERT', id: '1', v: 'a' },
      ]),
    );
    expect(s).toHaveLength(2);
  });
});
