import { describe, expect, it } from 'vitest';
import { type Decision, type Incoming, isNewer, type LocalState, resolve, type Version } from './resolve.ts';

const v = (ts: number, node: string): Version => ({ ts: BigInt(ts), node });
const row = (version: Version | null): LocalState => ({ kind: 'row', version });
const absent = (tombstone: Version | null = null): LocalState => ({ kind: 'absent', tombstone });
const inc = (op: Incoming['op'], version: Version, extra: Partial<Incoming> = {}): Incoming => ({
  op,
  version,
  complete: true,
  ...extra,
});

// [case, local, incoming, expected]
const cases: [string, LocalState, Incoming, Decision][] = [
  ['insert of a new key', absent(), inc('INSERT', v(10, 'wa-1')), { action: 'insert' }],
  ['insert after an older delete', absent(v(5, 'vl-1')), inc('INSERT', v(10, 'wa-1')), { action: 'insert' }],
  [
    'insert after a newer delete',
    absent(v(20, 'vl-1')),
    inc('INSERT', v(10, 'wa-1')),
    { action: 'skip', conflict: { kind: 'update_recently_deleted', resolution: 'keep_local' } },
  ],
  [
    'insert over an older row',
    row(v(5, 'vl-1')),
    inc('INSERT', v(10, 'wa-1')),
    { action: 'update', conflict: { kind: 'insert_exists', resolution: 'apply_remote' } },
  ],
  [
    'insert over a newer row',
    row(v(20, 'vl-1')),
    inc('INSERT', v(10, 'wa-1')),
    { action: 'skip', conflict: { kind: 'insert_exists', resolution: 'keep_local' } },
  ],
  [
    'insert at the same time: higher node id wins',
    row(v(10, 'vl-1')),
    inc('INSERT', v(10, 'wa-1')),
    { action: 'update', conflict: { kind: 'insert_exists', resolution: 'apply_remote' } },
  ],
  [
    'insert at the same time: lower node id loses',
    row(v(10, 'wa-1')),
    inc('INSERT', v(10, 'vl-1')),
    { action: 'skip', conflict: { kind: 'insert_exists', resolution: 'keep_local' } },
  ],
  [
    'insert over a row of unknown age (frozen)',
    row(null),
    inc('INSERT', v(10, 'wa-1')),
    { action: 'update', conflict: { kind: 'insert_exists', resolution: 'apply_remote' } },
  ],
  ['the same insert again', row(v(10, 'wa-1')), inc('INSERT', v(10, 'wa-1')), { action: 'skip' }],
  [
    'update of a row last written by the same node',
    row(v(5, 'wa-1')),
    inc('UPDATE', v(10, 'wa-1')),
    { action: 'update' },
  ],
  [
    'update of a row last written by another node, older',
    row(v(5, 'vl-1')),
    inc('UPDATE', v(10, 'wa-1')),
    { action: 'update', conflict: { kind: 'update_origin_change', resolution: 'apply_remote' } },
  ],
  [
    'update of a row last written by another node, newer',
    row(v(20, 'vl-1')),
    inc('UPDATE', v(10, 'wa-1')),
    { action: 'skip', conflict: { kind: 'update_origin_change', resolution: 'keep_local' } },
  ],
  [
    'update whose old row differs from the local one',
    row(v(5, 'wa-1')),
    inc('UPDATE', v(10, 'wa-1'), { beforeMatchesLocal: false }),
    { action: 'update', conflict: { kind: 'update_differing', resolution: 'apply_remote' } },
  ],
  [
    'update from another node whose old row differs from the local one',
    row(v(5, 'vl-1')),
    inc('UPDATE', v(10, 'wa-1'), { beforeMatchesLocal: false }),
    { action: 'update', conflict: { kind: 'update_differing', resolution: 'apply_remote' } },
  ],
  [
    'update from another node whose old row is the local one',
    row(v(5, 'vl-1')),
    inc('UPDATE', v(10, 'wa-1'), { beforeMatchesLocal: true }),
    { action: 'update', conflict: { kind: 'update_origin_change', resolution: 'apply_remote' } },
  ],
  [
    'update of a missing row, complete',
    absent(),
    inc('UPDATE', v(10, 'wa-1')),
    { action: 'insert', conflict: { kind: 'update_missing', resolution: 'apply_remote' } },
  ],
  [
    'update of a missing row, incomplete (unchanged TOAST)',
    absent(),
    inc('UPDATE', v(10, 'wa-1'), { complete: false }),
    { action: 'skip', conflict: { kind: 'update_missing', resolution: 'skip' } },
  ],
  [
    'update of a row deleted later',
    absent(v(20, 'vl-1')),
    inc('UPDATE', v(10, 'wa-1')),
    { action: 'skip', conflict: { kind: 'update_recently_deleted', resolution: 'keep_local' } },
  ],
  [
    'update of a row deleted earlier',
    absent(v(5, 'vl-1')),
    inc('UPDATE', v(10, 'wa-1')),
    { action: 'insert', conflict: { kind: 'update_missing', resolution: 'apply_remote' } },
  ],
  ['delete of an older row', row(v(5, 'vl-1')), inc('DELETE', v(10, 'wa-1')), { action: 'delete' }],
  [
    'delete of a row updated later',
    row(v(20, 'vl-1')),
    inc('DELETE', v(10, 'wa-1')),
    { action: 'skip', conflict: { kind: 'delete_recently_updated', resolution: 'keep_local' } },
  ],
  [
    'delete of a missing row',
    absent(),
    inc('DELETE', v(10, 'wa-1')),
    { action: 'tombstone', conflict: { kind: 'delete_missing', resolution: 'skip' } },
  ],
  [
    'delete of a row deleted later',
    absent(v(20, 'vl-1')),
    inc('DELETE', v(10, 'wa-1')),
    { action: 'skip', conflict: { kind: 'delete_missing', resolution: 'skip' } },
  ],
];

describe('resolve (last writer wins)', () => {
  for (const [name, local, incoming, expected] of cases) {
    it(name, () => expect(resolve(local, incoming)).toEqual(expected));
  }

  it('orders versions by timestamp, then node id; unknown is oldest', () => {
    expect(isNewer(v(2, 'a'), v(1, 'z'))).toBe(true);
    expect(isNewer(v(1, 'b'), v(1, 'a'))).toBe(true);
    expect(isNewer(v(1, 'a'), v(1, 'a'))).toBe(false);
    expect(isNewer(v(0, 'a'), null)).toBe(true);
  });

  it('converges: applying the same writes in any order leaves the newest one', () => {
    // Each write is (version, op). A key's final state must be the newest write, whatever the order.
    const writes: [Version, Incoming['op']][] = [
      [v(10, 'vl-1'), 'INSERT'],
      [v(12, 'wa-1'), 'UPDATE'],
      [v(15, 'vl-1'), 'DELETE'],
      [v(13, 'wa-1'), 'UPDATE'],
      [v(15, 'wa-1'), 'INSERT'],
    ];
    const permutations = (xs: number[]): number[][] =>
      xs.length <= 1
        ? [xs]
        : xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
    for (const order of permutations([0, 1, 2, 3, 4])) {
      let state: LocalState = absent();
      for (const i of order) {
        const [version, op] = writes[i]!;
        const d = resolve(state, inc(op, version));
        if (d.action === 'insert' || d.action === 'update') state = row(version);
        else if (d.action === 'delete' || d.action === 'tombstone') state = absent(version);
      }
      expect(state, `order ${order}`).toEqual(row(v(15, 'wa-1')));
    }
  });
});
