import { describe, expect, it } from 'vitest';
import type { NodeStatus, StatusReport } from '../control/status-model.ts';
import { History, seriesOf } from './history.ts';

function report(
  at: number,
  n: {
    lag: number | null;
    rows?: number;
    conflicts?: Record<string, number>;
    wal?: number | null;
    gone?: boolean;
  },
): StatusReport {
  const node = {
    id: 'wa-1',
    region: 'wa',
    database: { reachable: true },
    capture: {
      url: '',
      reachable: true,
      pausedTables: [],
      ...(n.wal === undefined
        ? {}
        : {
            slot: {
              name: 's',
              exists: true,
              active: true,
              confirmedLsn: null,
              retainedWalBytes: n.wal,
              walStatus: null,
            },
          }),
    },
    apply: {
      url: '',
      reachable: !n.gone,
      origins: [
        { source: 'vl-1', appliedLsn: null, lagBytes: null, lagSeconds: n.lag, lastAppliedCommitTime: null },
      ],
      pausedStreams: [],
      clusters: [],
      ...(n.gone ? {} : { rowsApplied: n.rows ?? 0, conflictsResolved: n.conflicts ?? {} }),
    },
    conflicts: [],
    pendingDdl: [],
  } as NodeStatus;
  return {
    at: new Date(at * 1000).toISOString(),
    topology: 't',
    verdict: { state: 'healthy', reasons: [] },
    regions: [
      {
        name: 'wa',
        kafka: { reachable: true, brokers: [] },
        registry: { reachable: true, url: '' },
        nodes: [node],
      },
    ],
  };
}

describe('dashboard series', () => {
  it('plots each report’s own figures, rates between reports, and gaps where a service is gone', () => {
    const points = [
      report(100, { lag: 0.5, rows: 0, conflicts: { insert_exists: 0 }, wal: 1000 }),
      report(102, { lag: 0.7, rows: 200, conflicts: { insert_exists: 10 }, wal: 2000 }),
      report(104, { lag: null, gone: true, wal: null }),
      report(106, { lag: 0.2, rows: 5, conflicts: { insert_exists: 0 }, wal: 3000 }),
      report(108, { lag: 0.3, rows: 25, conflicts: { insert_exists: 4 }, wal: 3000 }),
    ].map((r) => ({ t: Date.parse(r.at) / 1000, r }));
    const s = seriesOf(points);
    expect(s.lagSeconds).toEqual({
      labels: ['wa-1 ← vl-1'],
      data: [
        [100, 102, 104, 106, 108],
        [0.5, 0.7, null, 0.2, 0.3],
      ],
    });
    // a gap while apply is gone, none across its restart (the counter went back)
    expect(s.rowsPerSecond.data[1]).toEqual([null, 100, null, null, 10]);
    expect(s.conflictsPerSecond).toEqual({
      labels: ['insert_exists'],
      data: [
        [100, 102, 104, 106, 108],
        [null, 5, null, null, 2],
      ],
    });
    expect(s.retainedWalBytes.data[1]).toEqual([1000, 2000, null, 3000, 3000]);
  });

  it('keeps the last minutes only', () => {
    const h = new History(10);
    for (const t of [0, 5, 10, 15, 20]) h.add(report(1000 + t, { lag: t }));
    expect(h.series().lagSeconds.data[0]).toEqual([1010, 1015, 1020]);
    expect(h.latest?.at).toBe(new Date(1020_000).toISOString());
  });
});
