import { describe, expect, it } from 'vitest';
import type { RowChange } from '../../protocol/change-decoder.ts';
import { lsn, ZERO_LSN } from '../../protocol/lsn.ts';
import type { LookupRow } from '../outcome/answers.ts';
import { testTable } from '../target-table.fixture.ts';
import { type AheadTx, mayFollow, planAheadGroup, planAheadTransactions } from './resolve-ahead.ts';
import type { StatementNamer } from './script.ts';

const TABLES = new Map([
  ['branches', testTable('branches')],
  ['history', testTable('history', [])],
]);

type Op = [RowChange['op'], string, number?];

/** Source transactions, one after another: each `[op, table, id]` list one transaction. */
function source(txs: Op[][], step = 10n): RowChange[] {
  return txs.flatMap((ops, n) =>
    ops.map(
      ([op, t, id], index): RowChange => ({
        kind: 'row',
        origin: { region: 'wallonie', node: 'wa-1' },
        tx: {
          commitLsn: lsn(BigInt(0x100 * (n + 1))),
          commitTs: 1_000n + step * BigInt(n),
          xid: BigInt(700 + n),
          index,
          last: index === ops.length - 1,
        },
        op,
        schema: 'public',
        table: t,
        key: id === undefined ? {} : { id: String(id) },
        before: null,
        after: op === 'DELETE' ? null : { id: String(id ?? 0), v: `v${n}` },
      }),
    ),
  );
}

const group = (changes: RowChange[]) =>
  planAheadGroup(changes, 0, {
    applied: ZERO_LSN,
    groupTransactions: 100,
    chunkRows: 1000,
    table: (c) => TABLES.get(c.table),
  });

describe('planAheadGroup', () => {
  it('keeps transactions that update the same hot row one after another in one group (TPC-B)', () => {
    const tpcb = source(
      Array.from({ length: 6 }, (_, i): Op[] => [
        ['UPDATE', 'branches', 1 + (i % 2)],
        ['INSERT', 'history'],
      ]),
    );
    const g = group(tpcb);
    expect(g.txs).toHaveLength(6);
    expect(g.next).toBe(tpcb.length);
  });

  it('ends the group at a change of a key an earlier transaction changed that is not an update after an insert or update', () => {
    for (const [first, second] of [
      ['UPDATE', 'DELETE'],
      ['DELETE', 'UPDATE'],
      ['DELETE', 'INSERT'],
      ['UPDATE', 'INSERT'],
    ] as const) {
      const g = group(
        source([[[first, 'branches', 1]], [['UPDATE', 'branches', 2]], [[second, 'branches', 1]]]),
      );
      expect(
        g.txs.map((x) => x.start),
        `${first} then ${second}`,
      ).toEqual([0, 1]);
    }
    // an insert then an update of the new row is fine
    expect(group(source([[['INSERT', 'branches', 9]], [['UPDATE', 'branches', 9]]])).txs).toHaveLength(2);
  });

  it('ends the group at a repeated key whose change did not commit later at the source, or twice in one transaction', () => {
    const sameTime = source([[['UPDATE', 'branches', 1]], [['UPDATE', 'branches', 1]]], 0n);
    expect(group(sameTime).txs).toHaveLength(1);
    const twice = source([
      [['UPDATE', 'branches', 3]],
      [
        ['UPDATE', 'branches', 1],
        ['UPDATE', 'branches', 1],
      ],
    ]);
    expect(group(twice).txs).toHaveLength(1);
  });
});

describe('mayFollow', () => {
  const [u, d] = source([[['UPDATE', 'branches', 1]], [['DELETE', 'branches', 1]]]) as [RowChange, RowChange];
  const later = { ...u, tx: { ...u.tx, commitTs: u.tx.commitTs + 1n } };
  it.each([
    ['an update after an update, committed later', u, later, true],
    ['an update committed at the same time', u, { ...u }, false],
    ['a delete after an update', u, { ...d, tx: later.tx }, false],
    ['an update after a delete', d, later, false],
    ['a resync row', u, { ...later, resync: { versionTs: 1n, versionNode: 'wa-1' } }, false],
  ] as const)('%s', (_what, earlier, c, ok) => {
    expect(mayFollow({ c: earlier, ts: earlier.tx.commitTs }, c as RowChange)).toBe(ok);
  });
});

/** Statements as `execute <shape>(<args>)`: what a plan runs, readable. */
const NAMER: StatementNamer = {
  execute: (_owner, shape, _build, args) => `execute ${shape}(${args.join(', ')})`,
};

describe('planAheadTransactions', () => {
  const looked = (over: Partial<LookupRow>): LookupRow => ({
    ord: 1,
    row_xmin: '500',
    tomb_xmin: null,
    local_row: { id: 1, v: 'local' },
    row_ts: '2000',
    row_origin: null,
    found: true,
    tomb_ts: null,
    tomb_origin: null,
    tombstone: false,
    differs: null,
    ...over,
  });
  const plan = (txs: AheadTx[], state: Map<RowChange, LookupRow>) =>
    planAheadTransactions(txs, state, {
      statements: NAMER,
      localNode: 'vl-1',
      origin: 'brabant_wa-1',
      begin: () => ['begin'],
      commitSetup: () => 'setup',
      conflictsInsert: () => 'conflicts',
    });

  it('checks a row an earlier transaction of the group wrote by the version it wrote, not by an xmin', () => {
    // the local row (2000) is older than the source's updates (3000, 3010): both apply
    const changes = source([[['UPDATE', 'branches', 1]], [['UPDATE', 'branches', 1]]]).map((c) => ({
      ...c,
      tx: { ...c.tx, commitTs: c.tx.commitTs + 2_000n },
    }));
    const g = group(changes);
    const state = new Map(changes.map((c) => [c, looked({})]));
    const plans = plan(g.txs, state);
    expect(plans).toHaveLength(2);
    expect(plans[0]!.conflicts.map((c) => c.kind)).toEqual(['update_origin_change']);
    // the second follows the first: no conflict, and its check asks for the first one's version
    expect(plans[1]!.conflicts).toEqual([]);
    expect(plans[0]!.script).toContain(`'{"500"}'`);
    expect(plans[1]!.script).toContain(`'{NULL}'`);
    expect(plans[1]!.script).toContain(`'{"3000"}'`);
    expect(plans[1]!.script).toContain(`'brabant_wa-1'`);
  });

  it('checks a kept local row the same way again in a later transaction of the group', () => {
    // the local row (9000) is newer than both of the source's updates: kept twice
    const changes = source([[['UPDATE', 'branches', 1]], [['UPDATE', 'branches', 1]]]);
    const state = new Map(changes.map((c) => [c, looked({ row_ts: '9000' })]));
    const plans = plan(group(changes).txs, state);
    expect(plans.map((p) => p.conflicts.map((c) => c.resolution))).toEqual([['keep_local'], ['keep_local']]);
    // both rest on the row as looked up (its xmin), none on a version written in the group
    expect(plans[1]!.script).toContain(`'{"500"}'`);
    expect(plans[1]!.script).not.toContain(`'{"1000"}'`);
  });

  it('ends the plan after a transaction that leaves a key a later one changes in a state it cannot know', () => {
    // an update of a deleted row (tombstone older than the change) inserts it: the tombstone's
    // state after that is for a new lookup to say
    const changes = source([[['UPDATE', 'branches', 1]], [['UPDATE', 'branches', 1]]]).map((c) => ({
      ...c,
      tx: { ...c.tx, commitTs: c.tx.commitTs + 2_000n },
    }));
    const gone = looked({
      found: false,
      row_xmin: null,
      local_row: null,
      row_ts: null,
      tombstone: true,
      tomb_ts: '100',
      tomb_xmin: '400',
    });
    const plans = plan(group(changes).txs, new Map(changes.map((c) => [c, gone])));
    expect(plans).toHaveLength(1);
  });
});
