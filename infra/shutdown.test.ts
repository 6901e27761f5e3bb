import { describe, expect, it } from 'vitest';
import type { ProcessInfo } from './process-table.ts';
import {
  describeStray,
  leftoverTarget,
  membersOf,
  shutdownPlan,
  stackProcesses,
  withGrace,
} from './shutdown.ts';

const proc = (p: Partial<ProcessInfo> & { pid: number }): ProcessInfo => ({
  ppid: 1,
  pgid: p.pid,
  state: 'S',
  comm: 'java',
  startTime: 100,
  cwd: '/',
  args: [],
  ...p,
});

const DATA = '/w/.brabant/data/vl-1';
const postmaster = proc({
  pid: 10,
  comm: 'postgres',
  cwd: DATA,
  args: ['/usr/lib/postgresql/15/bin/postgres', '-D', DATA],
});
// Backends call setsid(): a group of their own, found only by their folder.
const backend = proc({
  pid: 11,
  ppid: 10,
  pgid: 11,
  comm: 'postgres',
  cwd: DATA,
  args: ['postgres: postgres db idle'],
});

describe('shutdown plans', () => {
  it('stops PostgreSQL fast, then immediate, then SIGKILL of every process (never the smart SIGTERM)', () => {
    expect(shutdownPlan('postgres').map((s) => [s.signal, s.to])).toEqual([
      ['SIGINT', 'leader'],
      ['SIGQUIT', 'leader'],
      ['SIGKILL', 'all'],
    ]);
    expect(shutdownPlan('registry-db')).toEqual(shutdownPlan('postgres'));
  });

  it('lets the JVMs run their shutdown hooks first', () => {
    for (const kind of ['kafka', 'registry'] as const) {
      expect(shutdownPlan(kind).map((s) => s.signal)).toEqual(['SIGTERM', 'SIGKILL']);
    }
    expect(withGrace(shutdownPlan('kafka'), 1000)[0]!.waitMs).toBe(1000);
    expect(withGrace(shutdownPlan('kafka'), undefined)).toEqual(shutdownPlan('kafka'));
  });
});

describe('membersOf', () => {
  const id = { pid: 10, startTime: 100, dataDir: DATA };

  it('counts a postmaster and its backends', () => {
    expect(membersOf(id, [postmaster, backend, proc({ pid: 99 })]).map((p) => p.pid)).toEqual([10, 11]);
  });

  it('still finds the backends a SIGKILLed postmaster left behind', () => {
    expect(membersOf(id, [{ ...backend, ppid: 1 }]).map((p) => p.pid)).toEqual([11]);
  });

  it('never takes a later process that got the same pid, nor its group, for ours', () => {
    const later = proc({ pid: 10, startTime: 555, comm: 'bash' });
    const itsChild = proc({ pid: 12, pgid: 10, comm: 'sleep' });
    expect(membersOf({ pid: 10, startTime: 100 }, [later, itsChild])).toEqual([]);
  });

  it('counts the rest of the group of a leader that is gone (e.g. a JVM helper)', () => {
    expect(membersOf({ pid: 20, startTime: 100 }, [proc({ pid: 21, pgid: 20 })]).map((p) => p.pid)).toEqual([
      21,
    ]);
  });

  it('ignores zombies: they have exited and wait to be reaped', () => {
    expect(membersOf(id, [{ ...postmaster, state: 'Z' }])).toEqual([]);
  });
});

describe('stackProcesses', () => {
  const work = '/w/.brabant';
  const kafka = proc({
    pid: 30,
    args: ['java', '-cp', '/w/.cache/kafka/libs/*', 'kafka.Kafka', `${work}/data/kafka/server.properties`],
  });
  const registry = proc({
    pid: 31,
    cwd: `${work}/data/registry`,
    args: ['java', '-jar', '/w/.cache/registry/b/quarkus-run.jar'],
  });

  it('finds the programs a stack in the folder started, by their folder or their files', () => {
    const found = stackProcesses(work, [postmaster, backend, kafka, registry]).map((p) => p.pid);
    expect(found).toEqual([10, 11, 30, 31]);
  });

  it('leaves alone a shell in the stack folder and a stack in a folder below another one', () => {
    const shell = proc({ pid: 40, comm: 'bash', cwd: `${work}/data` });
    const testStack = proc({ pid: 41, comm: 'postgres', cwd: '/w/.cache/test-stack/data/vl-1' });
    expect(stackProcesses(work, [shell])).toEqual([]);
    expect(stackProcesses('/w', [testStack])).toEqual([]);
    expect(stackProcesses(work, [proc({ pid: 42, comm: 'java', cwd: work })])).toEqual([]);
  });

  it('says how to stop a stray and what it was', () => {
    expect(leftoverTarget(postmaster)).toMatchObject({
      id: { pid: 10, dataDir: DATA },
      plan: shutdownPlan('postgres'),
    });
    expect(leftoverTarget(backend).id).toEqual({ pid: 11, startTime: 100 });
    expect(describeStray(postmaster)).toBe('postgres vl-1 (pid 10)');
    expect(describeStray(backend)).toBe('a postgres backend of vl-1 (pid 11)');
    expect(describeStray(kafka)).toBe('kafka (pid 30)');
    expect(describeStray(registry)).toBe('schema-registry (pid 31)');
  });
});
