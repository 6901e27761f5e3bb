import { describe, expect, it } from 'vitest';
import {
  DEFAULT_THRESHOLDS,
  exitCodeOf,
  type NodeStatus,
  type RegionStatus,
  renderStatus,
  verdictOf,
} from './status-model.ts';

function node(id: string, over: Partial<NodeStatus> = {}): NodeStatus {
  return {
    id,
    region: 'r',
    database: { reachable: true, walLsn: '0/1' },
    capture: {
      url: 'http://c',
      reachable: true,
      ready: true,
      readyDetail: 'streaming',
      pausedTables: [],
      slot: {
        name: 's',
        exists: true,
        active: true,
        confirmedLsn: '0/1',
        retainedWalBytes: 100,
        walStatus: 'reserved',
      },
    },
    apply: {
      url: 'http://a',
      reachable: true,
      ready: true,
      readyDetail: 'reading',
      origins: [
        { source: 'x', appliedLsn: '0/1', lagBytes: 0, lagSeconds: 0.5, lastAppliedCommitTime: null },
      ],
      pausedStreams: [],
      clusters: [{ cluster: 'k:1', up: true }],
    },
    conflicts: [],
    pendingDdl: [],
    ...over,
  };
}

function region(nodes: NodeStatus[], over: Partial<RegionStatus> = {}): RegionStatus {
  return {
    name: 'r',
    kafka: { reachable: true, brokers: ['k:1'] },
    registry: { reachable: true, url: 'http://reg' },
    router: { url: 'http://router', reachable: true, leader: nodes[0]?.id ?? null, nodes: [] },
    deadLetters: { total: 0, open: 0 },
    nodes,
    ...over,
  };
}

const verdict = (regions: RegionStatus[]) =>
  verdictOf({ at: '', topology: 't.yaml', regions }, DEFAULT_THRESHOLDS);

describe('status verdict', () => {
  const base = node('a');
  const cases: [string, RegionStatus[], 'healthy' | 'degraded' | 'down', string | undefined][] = [
    ['everything runs', [region([base])], 'healthy', undefined],
    [
      'a node unreachable',
      [region([node('a', { database: { reachable: false, error: 'ECONNREFUSED' } })])],
      'down',
      'node a unreachable (ECONNREFUSED)',
    ],
    [
      'Kafka unreachable',
      [region([base], { kafka: { reachable: false, brokers: ['k:1'], error: 'x' } })],
      'down',
      'Kafka of r unreachable (x)',
    ],
    [
      'capture not running',
      [region([node('a', { capture: { ...base.capture, reachable: false, error: 'refused' } })])],
      'down',
      'capture of a not running (refused)',
    ],
    [
      'apply not streaming yet',
      [region([node('a', { apply: { ...base.apply, ready: false, readyDetail: 'starting' } })])],
      'down',
      'apply of a not streaming: starting',
    ],
    [
      'a cluster apply cannot read',
      [region([node('a', { apply: { ...base.apply, clusters: [{ cluster: 'k:2', up: false }] } })])],
      'down',
      'apply of a cannot read Kafka k:2',
    ],
    [
      'router without leader',
      [region([base], { router: { url: 'u', reachable: true, leader: null, nodes: [] } })],
      'down',
      'router of r has no leader: its applications cannot write',
    ],
    [
      'lag over the threshold',
      [
        region([
          node('a', { apply: { ...base.apply, origins: [{ ...base.apply.origins[0]!, lagSeconds: 31 }] } }),
        ]),
      ],
      'degraded',
      'a is 31.0 s behind x (over 30 s)',
    ],
    [
      'a paused stream',
      [
        region([
          node('a', {
            apply: { ...base.apply, pausedStreams: [{ topic: 't', partition: '0', reason: 'DDL_FAILED' }] },
          }),
        ]),
      ],
      'degraded',
      'apply of a: stream t/0 paused (DDL_FAILED)',
    ],
    [
      'a paused table',
      [region([node('a', { capture: { ...base.capture, pausedTables: ['public.x'] } })])],
      'degraded',
      'capture of a: table public.x paused (its changes go to the dead-letter topic)',
    ],
    [
      'open dead letters',
      [region([base], { deadLetters: { total: 3, open: 2 } })],
      'degraded',
      "2 open dead letter(s) in r's cluster (brabant deadletters)",
    ],
    [
      'registry unreachable',
      [region([base], { registry: { reachable: false, url: 'u', error: 'e' } })],
      'degraded',
      'registry of r unreachable (e)',
    ],
    [
      'retained WAL over the warning',
      [
        region([
          node('a', {
            capture: { ...base.capture, slot: { ...base.capture.slot!, retainedWalBytes: 2 * 1024 ** 3 } },
          }),
        ]),
      ],
      'degraded',
      'slot of a retains 2.00 GiB of WAL (over 1.00 GiB)',
    ],
  ];
  for (const [what, regions, state, first] of cases)
    it(`${what}: ${state}`, () => {
      const v = verdict(regions);
      expect(v.state).toBe(state);
      expect(v.reasons[0]).toBe(first);
    });

  it('puts the reasons that make it down first, the others after', () => {
    const v = verdict([
      region([
        node('a', { apply: { ...base.apply, pausedStreams: [{ topic: 't', partition: '1', reason: 'R' }] } }),
        node('b', { database: { reachable: false } }),
      ]),
    ]);
    expect(v.state).toBe('down');
    expect(v.reasons).toEqual(['node b unreachable', 'apply of a: stream t/1 paused (R)']);
  });

  it('exit codes: 0 healthy, 1 degraded, 2 down', () => {
    expect([exitCodeOf('healthy'), exitCodeOf('degraded'), exitCodeOf('down')]).toEqual([0, 1, 2]);
  });

  it('renders the verdict line first and the rest of a node that is down', () => {
    const regions = [region([node('a', { database: { reachable: false, error: 'gone' } }), node('b')])];
    const text = renderStatus({ at: 'now', topology: 't.yaml', regions, verdict: verdict(regions) });
    const lines = text.split('\n');
    expect(lines[0]).toBe('down: node a unreachable (gone)');
    expect(text).toContain('node a: UNREACHABLE (gone)');
    expect(text).toContain('node b: reachable, WAL at 0/1');
    expect(text).toContain('from x: lag 0.5 s');
  });
});
