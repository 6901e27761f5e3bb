/**
 * A resync row is decided by its original version, and what it writes keeps that version: the
 * cases of docs/capture.md ("Resync: what holds"), as a table. Times are unix micros: the row's
 * original commit at 100, the resync at 500; a peer's write at 300 lies between them.
 */
import { describe, expect, it } from 'vitest';
import type { RowChange } from '../protocol/change-decoder.ts';
import { lsn } from '../protocol/lsn.ts';
import type { LookupRow } from './outcome/answers.ts';
import { decide } from './planner/decide.ts';
import { writesFor } from './planner/full.ts';
import { changeVersion, OLDEST, resyncedVersionWrites } from './resync.ts';
import type { TargetTable } from './target-catalog.ts';
import { testTable } from './target-table.fixture.ts';

const T: TargetTable = testTable('t');

/** A change of source `a` committed at `txTs`; with `original`, a resync row of that version. */
function change(
  op: 'INSERT' | 'UPDATE' | 'DELETE',
  txTs: bigint,
  original?: [bigint | null, string],
): RowChange {
  return {
    kind: 'row',
    origin: { region: 'r', node: 'a' },
    tx: { xid: 1n, commitLsn: lsn(1000n), commitTs: txTs, index: 1, last: true },
    op,
    schema: 'public',
    table: 't',
    key: { id: '1' },
    before: null,
    after: op === 'DELETE' ? null : { id: '1', v: 'from a' },
    ...(original === undefined
      ? {}
      : { resync: { id: 'rs-1', versionTs: original[0], versionNode: original[1] } }),
  };
}

/** What the lookup answers on the peer (b): a row of version (ts, origin), a tombstone, or nothing. */
function local(state: {
  row?: readonly [string | null, string | null];
  tomb?: readonly [string, string | null];
}): LookupRow {
  return {
    ord: 1,
    row_xmin: state.row ? '77' : null,
    tomb_xmin: state.tomb ? '78' : null,
    local_row: state.row ? { id: '1', v: 'here' } : null,
    row_ts: state.row?.[0] ?? null,
    row_origin: state.row?.[1] ?? null,
    found: state.row !== undefined,
    tomb_ts: state.tomb?.[0] ?? null,
    tomb_origin: state.tomb?.[1] ?? null,
    tombstone: state.tomb !== undefined,
    differs: null,
  };
}

const decideOne = (c: RowChange, l: LookupRow) => decide([c], [l], 'b', T, ['id']).decisions[0]!.d;

describe('a resync row is decided by its original version, not the resync time', () => {
  it.each([
    // [what, the peer's state, the resync row's original version, action]
    ['the peer lacks the row (lost with the slot)', {}, [100n, 'a'], 'insert'],
    ['the peer holds an older version', { row: ['50', 'brabant_a'] }, [100n, 'a'], 'update'],
    ['the peer holds the same version', { row: ['100', 'brabant_a'] }, [100n, 'a'], 'skip'],
    // the resync time (500) would beat this peer's own newer write (300): the original (100) does not
    ['the peer holds a newer write of its own', { row: ['300', null] }, [100n, 'a'], 'skip'],
    ['the peer deleted the key later', { tomb: ['300', null] }, [100n, 'a'], 'skip'],
    ['the peer deleted the key earlier', { tomb: ['50', 'brabant_c'] }, [100n, 'a'], 'insert'],
    // a row the source got from a third node: compared as that node's write
    ['a row from a third node, newer than the peer', { row: ['50', 'brabant_c'] }, [100n, 'c'], 'update'],
    ['a tie broken by node id', { row: ['100', 'brabant_c'] }, [100n, 'd'], 'update'],
    // PostgreSQL no longer knows the row's commit (frozen): the oldest of versions
    ['an unknown version against any row', { row: ['1', null] }, [null, 'a'], 'skip'],
    ['an unknown version where nothing is', {}, [null, 'a'], 'insert'],
  ] as const)('%s', (_what, state, original, action) => {
    const c = change('INSERT', 500n, [original[0], original[1]]);
    expect(decideOne(c, local(state)).action).toBe(action);
  });

  it.each([
    ['a remembered delete newer than the peer’s row', { row: ['50', null] }, 'delete'],
    ['a remembered delete older than the peer’s row', { row: ['300', null] }, 'skip'],
    ['a remembered delete where the peer has nothing', {}, 'tombstone'],
  ] as const)('%s', (_what, state, action) => {
    const c = change('DELETE', 500n, [100n, 'a']);
    expect(decideOne(c, local(state)).action).toBe(action);
  });

  it('logs a conflict with the row’s original version, under the policy label resync', () => {
    const c = change('INSERT', 500n, [100n, 'c']);
    const { conflicts } = decide([c], [local({ row: ['300', null] })], 'b', T, ['id']);
    expect(conflicts).toMatchObject([
      { kind: 'insert_exists', resolution: 'keep_local', remoteTs: 100n, remoteNode: 'c', policy: 'resync' },
    ]);
  });
});

describe('after a peer applied a resync row', () => {
  // The lookup reads the version the resync recorded (brabant.row_version_at): 100 from a, not
  // the xmin's (500 from a). A later write must compare against that.
  const resynced = local({ row: ['100', 'brabant_a'] });

  it('a write made between the original version and the resync (still in flight) wins, as on the source', () => {
    const inFlight = change('UPDATE', 300n);
    expect(decideOne({ ...inFlight, origin: { region: 'r', node: 'c' } }, resynced).action).toBe('update');
  });

  it('a write older than the original version loses, as on the source', () => {
    const older = change('UPDATE', 80n);
    expect(decideOne({ ...older, origin: { region: 'r', node: 'c' } }, resynced).action).toBe('skip');
  });

  it('a delete made in between wins too', () => {
    const del = change('DELETE', 300n);
    expect(decideOne({ ...del, origin: { region: 'r', node: 'c' } }, resynced).action).toBe('delete');
  });
});

describe('what a resync row writes', () => {
  it('keeps the original version of each row and tombstone it wrote, and nothing for what it skipped', () => {
    const rows = [
      change('INSERT', 500n, [100n, 'a']),
      { ...change('INSERT', 500n, [null, 'a']), key: { id: '2' }, after: { id: '2', v: 'x' } },
      { ...change('INSERT', 500n, [100n, 'a']), key: { id: '3' }, after: { id: '3', v: 'y' } },
      { ...change('DELETE', 500n, [90n, 'c']), key: { id: '4' } },
    ];
    const looked = [local({}), local({}), local({ row: ['300', null] }), local({ row: ['50', null] })].map(
      (l, i) => ({ ...l, ord: i + 1 }),
    );
    const { decisions } = decide(rows, looked, 'b', T, ['id']);
    expect(decisions.map((x) => x.d.action)).toEqual(['insert', 'insert', 'skip', 'delete']);
    const [w] = resyncedVersionWrites(T, ['id'], decisions);
    expect(w!.params).toEqual([
      ['1', '2', '4'],
      'public.t',
      ['row', 'row', 'tombstone'],
      ['100', null, '90'],
      ['brabant_a', 'brabant_a', 'brabant_c'],
    ]);
    expect(w!.sql).toMatch(/insert into brabant.resynced_versions .*pg_current_xact_id\(\)::xid/s);
    // and the full path's writes of the batch end with it
    expect(writesFor(T, ['id'], decisions).at(-1)).toEqual(w);
  });

  it('writes no versions for ordinary changes', () => {
    const { decisions } = decide([change('INSERT', 500n)], [local({})], 'b', T, ['id']);
    expect(resyncedVersionWrites(T, ['id'], decisions)).toEqual([]);
  });

  it('gives an ordinary change its transaction’s version, a resync row its own', () => {
    expect(changeVersion(change('INSERT', 500n))).toEqual({ ts: 500n, node: 'a' });
    expect(changeVersion(change('INSERT', 500n, [100n, 'c']))).toEqual({ ts: 100n, node: 'c' });
    expect(changeVersion(change('INSERT', 500n, [null, 'c']))).toEqual(OLDEST);
  });
});
