import { describe, expect, it } from 'vitest';
import { chooseLeader, type LeaderInput, type NodeHealth } from './leader.ts';

const nodes = [
  { id: 'vl-1', region: 'vlaanderen' },
  { id: 'wa-1', region: 'wallonie' },
  { id: 'vl-2', region: 'vlaanderen' },
];
const ok: NodeHealth = { healthy: true };
const failing = (since: number): NodeHealth => ({ healthy: false, failingSince: since });
const input = (over: Partial<LeaderInput>): LeaderInput => ({
  region: 'vlaanderen',
  nodes,
  current: 'vl-1',
  health: new Map([
    ['vl-1', ok],
    ['wa-1', ok],
    ['vl-2', ok],
  ]),
  maintenance: new Set(),
  now: 10_000,
  deadAfterMs: 1000,
  ...over,
});

describe('chooseLeader', () => {
  it('starts on the first healthy node of its own region', () => {
    expect(chooseLeader(input({ current: undefined }))).toMatchObject({ leader: 'vl-1', changed: true });
  });

  it('keeps a healthy leader', () => {
    expect(chooseLeader(input({}))).toMatchObject({ leader: 'vl-1', changed: false });
  });

  it('keeps a leader that failed only briefly (not dead yet)', () => {
    const health = new Map([...input({}).health, ['vl-1', failing(9_500)]]);
    expect(chooseLeader(input({ health }))).toMatchObject({ leader: 'vl-1', changed: false });
  });

  it('fails over to the next node of the same region first', () => {
    const health = new Map([...input({}).health, ['vl-1', failing(8_000)]]);
    const d = chooseLeader(input({ health }));
    expect(d).toMatchObject({ leader: 'vl-2', changed: true });
    expect(d.reason).toContain('vl-1 failed health checks');
  });

  it('fails over to another region when its own has no healthy node', () => {
    const health = new Map<string, NodeHealth>([
      ['vl-1', failing(8_000)],
      ['vl-2', failing(1_000)],
      ['wa-1', ok],
    ]);
    const d = chooseLeader(input({ health }));
    expect(d).toMatchObject({ leader: 'wa-1', changed: true });
    expect(d.reason).toContain('another region (wallonie)');
  });

  it('moves off a node in maintenance, and does not move back by itself (no flapping)', () => {
    expect(chooseLeader(input({ maintenance: new Set(['vl-1']) }))).toMatchObject({
      leader: 'vl-2',
      changed: true,
    });
    // vl-1 is healthy again and out of maintenance, but vl-2 leads now and stays
    expect(chooseLeader(input({ current: 'vl-2' }))).toMatchObject({ leader: 'vl-2', changed: false });
  });

  it('keeps the current leader when nothing else is usable, and says why', () => {
    const health = new Map<string, NodeHealth>([
      ['vl-1', failing(0)],
      ['vl-2', failing(0)],
      ['wa-1', failing(0)],
    ]);
    const d = chooseLeader(input({ health }));
    expect(d).toMatchObject({ leader: 'vl-1', changed: false });
    expect(d.reason).toContain('no other node is healthy');
  });

  it('is deterministic: two routers with the same view choose the same node', () => {
    const health = new Map([...input({}).health, ['vl-1', failing(0)]]);
    expect(chooseLeader(input({ health })).leader).toBe(chooseLeader(input({ health })).leader);
  });
});
