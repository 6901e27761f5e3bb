import { describe, expect, it } from 'vitest';
import { lsn } from '../protocol/lsn.ts';
import { OffsetTracker } from './offset-tracker.ts';

const T = 'brabant.vlaanderen.changes';
const due = (t: OffsetTracker, now = 10_000) => t.due(T, 0, now, true)?.offset;

describe('the offsets apply may commit', () => {
  it('follow what was handled when no transaction is open', () => {
    const t = new OffsetTracker(1000);
    t.afterRun(T, 0, 'vl-1', 9n, undefined);
    expect(due(t)).toBe('10');
    t.handled(T, 0, 10n);
    expect(due(t)).toBe('11');
  });

  it('stay below the first event of a source transaction still open, across runs, until it ends', () => {
    const t = new OffsetTracker(1000);
    t.afterRun(T, 0, 'vl-1', 4n, undefined);
    // a large transaction begins at offset 5 and is still open after offset 9
    t.afterRun(T, 0, 'vl-1', 9n, { commitLsn: lsn(0x500n), firstOffsetInRun: 5n });
    expect(due(t)).toBe('5');
    // the next run continues it (its first event in that run is not its first event)
    t.afterRun(T, 0, 'vl-1', 19n, { commitLsn: lsn(0x500n), firstOffsetInRun: 10n });
    expect(due(t)).toBe('5');
    // it ends, and the next transaction is open from offset 25
    t.afterRun(T, 0, 'vl-1', 29n, { commitLsn: lsn(0x600n), firstOffsetInRun: 25n });
    expect(due(t)).toBe('25');
    t.afterRun(T, 0, 'vl-1', 30n, undefined);
    expect(due(t)).toBe('31');
  });

  it('stay below the oldest open transaction of the sources sharing a partition', () => {
    const t = new OffsetTracker(1000);
    t.afterRun(T, 0, 'vl-1', 3n, { commitLsn: lsn(0x100n), firstOffsetInRun: 2n });
    t.afterRun(T, 0, 'vl-2', 8n, { commitLsn: lsn(0x200n), firstOffsetInRun: 6n });
    expect(due(t)).toBe('2');
    t.afterRun(T, 0, 'vl-1', 12n, undefined);
    expect(due(t)).toBe('6');
    t.afterRun(T, 0, 'vl-2', 14n, undefined);
    expect(due(t)).toBe('15');
  });

  it('never move backwards', () => {
    const t = new OffsetTracker(1000);
    t.afterRun(T, 0, 'vl-1', 9n, undefined);
    t.afterRun(T, 0, 'vl-2', 12n, { commitLsn: lsn(0x100n), firstOffsetInRun: 3n });
    expect(due(t)).toBe('10');
  });

  it('are committed at most once per interval per partition, and whatever the interval at stop', () => {
    const t = new OffsetTracker(1000);
    t.afterRun(T, 0, 'vl-1', 9n, undefined);
    const first = t.due(T, 0, 5_000)!;
    expect(first.offset).toBe('10');
    t.committed(first, 5_000);
    expect(t.due(T, 0, 5_500)).toBeUndefined(); // nothing new
    t.handled(T, 0, 10n);
    expect(t.due(T, 0, 5_500)).toBeUndefined(); // too soon
    expect(t.due(T, 0, 6_000)?.offset).toBe('11');
    t.afterRun(T, 3, 'wa-1', 1n, undefined);
    expect(t.allDue(5_600).map((c) => `${c.partition}:${c.offset}`)).toEqual(['0:11', '3:2']);
  });
});
