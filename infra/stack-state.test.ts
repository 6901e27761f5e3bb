import { describe, expect, it } from 'vitest';
import type { ProcessInfo } from './process-table.ts';
import { type ComponentRecord, classifyWorkDir, type StackState } from './stack-state.ts';

const WORK = '/w/.brabant';
const proc = (p: Partial<ProcessInfo> & { pid: number }): ProcessInfo => ({
  ppid: 1,
  pgid: p.pid,
  state: 'S',
  comm: 'postgres',
  startTime: 100,
  cwd: `${WORK}/data/vl-1`,
  args: [],
  ...p,
});
const node: ComponentRecord = {
  kind: 'postgres',
  id: 'vl-1',
  name: 'postgres vl-1',
  pid: 10,
  startTime: 100,
  logFile: `${WORK}/logs/vl-1.log`,
  spec: { name: 'vl-1', port: 5432, dataDir: `${WORK}/data/vl-1`, logFile: `${WORK}/logs/vl-1.log` },
};
const state = (over: Partial<StackState>): StackState => ({
  regions: [],
  registryUrl: '',
  workDir: WORK,
  pids: [node],
  owner: { pid: 1000, startTime: 7 },
  detached: false,
  ...over,
});
const owner = proc({ pid: 1000, startTime: 7, comm: 'node', cwd: '/w' });
const postmaster = proc({ pid: 10 });

describe('classifyWorkDir', () => {
  it('is clean with no state and nothing running, and says when a state file is stale', () => {
    expect(classifyWorkDir(WORK, undefined, [])).toEqual({ kind: 'clean', staleState: false });
    expect(classifyWorkDir(WORK, state({}), [owner])).toEqual({ kind: 'clean', staleState: true });
  });

  it('is running while the process that started it lives', () => {
    expect(classifyWorkDir(WORK, state({}), [owner, postmaster])).toMatchObject({ kind: 'running' });
  });

  it('is running when detached on purpose, though its owner is gone', () => {
    expect(classifyWorkDir(WORK, state({ detached: true }), [postmaster])).toMatchObject({ kind: 'running' });
  });

  it('is left over when its owner died without stopping it (killed `brabant up`)', () => {
    const status = classifyWorkDir(WORK, state({}), [postmaster]);
    expect(status.kind).toBe('left-over');
    expect(status.kind === 'left-over' && status.live.map((l) => l.record.id)).toEqual(['vl-1']);
  });

  it('does not take a later process with the owner pid for the owner', () => {
    const impostor = { ...owner, startTime: 99 };
    expect(classifyWorkDir(WORK, state({}), [impostor, postmaster]).kind).toBe('left-over');
  });

  it('finds what a run left without a state file, and backends of a postmaster recorded under another pid', () => {
    const orphan = proc({ pid: 11 });
    const status = classifyWorkDir(WORK, undefined, [orphan]);
    expect(status).toEqual({ kind: 'left-over', live: [], strays: [orphan] });
  });

  it('counts a state file from before owners were recorded as in use, as it was then', () => {
    expect(classifyWorkDir(WORK, state({ owner: undefined }), [postmaster]).kind).toBe('running');
  });
});
