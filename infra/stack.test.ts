import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkWorkDir, nodeIds, validateTopology } from './stack.ts';
import type { ComponentRecord, WorkDirStatus } from './stack-state.ts';

describe('topology', () => {
  it('names nodes after the first letters of their region', () => {
    const ids = nodeIds({
      regions: [
        { name: 'vlaanderen', nodes: 2 },
        { name: 'wallonie', nodes: 1 },
      ],
      kafka: 'shared',
    });
    expect([...ids.entries()]).toEqual([
      ['vlaanderen', ['vl-1', 'vl-2']],
      ['wallonie', ['wa-1']],
    ]);
  });

  it('uses whole region names when the short ones clash', () => {
    const ids = nodeIds({
      regions: [
        { name: 'brussel', nodes: 1 },
        { name: 'brugge', nodes: 1 },
      ],
      kafka: 'shared',
    });
    expect(ids.get('brussel')).toEqual(['brussel-1']);
    expect(ids.get('brugge')).toEqual(['brugge-1']);
  });

  it('refuses bad topologies with a clear message', () => {
    expect(() => validateTopology({ regions: [], kafka: 'shared' })).toThrow(/at least one region/);
    expect(() => validateTopology({ regions: [{ name: 'Vl aanderen', nodes: 1 }], kafka: 'shared' })).toThrow(
      /region name 'Vl aanderen'/,
    );
    expect(() => validateTopology({ regions: [{ name: 'a', nodes: 0 }], kafka: 'shared' })).toThrow(
      /1 to 8 nodes/,
    );
    expect(() =>
      validateTopology({
        regions: [
          { name: 'a', nodes: 1 },
          { name: 'a', nodes: 1 },
        ],
        kafka: 'shared',
      }),
    ).toThrow(/listed twice/);
  });
});

describe('work folder checks', () => {
  const clean = { kind: 'clean', staleState: false } as const;

  it('refuses a data folder left from an earlier run, naming the fix', () => {
    const dir = mkdtempSync(join(tmpdir(), 'brabant-'));
    mkdirSync(join(dir, 'data'));
    expect(() => checkWorkDir(dir, false, clean)).toThrow(
      /left from an earlier run.*brabant down --purge.*--reuse/s,
    );
    expect(() => checkWorkDir(dir, true, clean)).not.toThrow();
  });

  it('refuses to start a second stack over one in use, naming its parts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'brabant-'));
    const record: ComponentRecord = {
      kind: 'kafka',
      id: 'kafka',
      name: 'kafka',
      pid: 4242,
      startTime: 1,
      logFile: '',
      spec: { name: 'kafka', brokerPort: 1, controllerPort: 2, dataDir: '', logFile: '', libsDir: '' },
    };
    const running: WorkDirStatus = { kind: 'running', live: [{ record, processes: [] }], strays: [] };
    expect(() => checkWorkDir(dir, true, running)).toThrow(/already running.*kafka pid 4242.*brabant down/s);
  });
});
