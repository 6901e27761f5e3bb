/**
 * The `brabant` CLI as a user runs it, for tests of the local stack's own commands: each test gets
 * its own stack folder and a block of free loopback ports, and local components only (external ones
 * given to the test run are not passed on).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readProcessTable } from '../../infra/process-table.ts';
import { assertPortFree, waitFor } from '../../infra/processes.ts';
import { stackProcesses } from '../../infra/shutdown.ts';
import { canonical } from '../../infra/stack-control.ts';
import { readState } from '../../infra/stack-state.ts';

const CLI = resolve('bin/brabant.mjs');

/** The environment of a CLI run: no external components, this stack folder and these ports. */
export function cliEnv(home: string, basePort: number): Record<string, string | undefined> {
  return {
    ...process.env,
    BRABANT_KAFKA_BROKERS: undefined,
    BRABANT_PG_URLS: undefined,
    BRABANT_REGISTRY_URL: undefined,
    BRABANT_REGISTRY_DB_URL: undefined,
    BRABANT_HOME: home,
    BRABANT_BASE_PORT: String(basePort),
  };
}

export function brabant(
  args: string[],
  env: Record<string, string | undefined>,
  timeoutMs = 180_000,
): Promise<{ code: number; out: string }> {
  return new Promise((res) => {
    execFile(CLI, args, { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      res({
        code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1,
        out: `${stdout}${stderr}`,
      });
    });
  });
}

/** A `brabant` command left running (the foreground `brabant up`), with its output so far. */
export function spawnBrabant(
  args: string[],
  env: Record<string, string | undefined>,
): {
  child: ChildProcess;
  output: () => string;
} {
  const child = spawn(CLI, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  return { child, output: () => out };
}

/** A fresh stack folder (mode 0700, as `mktemp -d` makes it). */
export function newHome(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `brabant-${prefix}-`));
}

/**
 * The first of `count` consecutive free loopback ports (the CLI takes a base port, not 0). Below
 * Linux's ephemeral range (32768 and up): there, a client connection of a parallel test may take
 * a port between the check and the start (seen: the registry's, during `up --reuse`).
 */
export async function freeBasePort(count = 8): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (32_000 - 20_000 - count));
    try {
      for (let i = 0; i < count; i++) await assertPortFree('127.0.0.1', base + i, 'a test stack');
      return base;
    } catch {
      /* taken: try another block */
    }
  }
  throw new Error(`no block of ${count} free ports found`);
}

/** Every process of the stack in `home` that runs now (found by /proc, not by its state file). */
export function processesOf(home: string): number[] {
  return stackProcesses(canonical(home), readProcessTable()).map((p) => p.pid);
}

/** The pid the state file records for a part (`kafka`, `vl-1`, `registry`, `registry-db`). */
export function recordedPid(home: string, id: string): number {
  const r = readState(canonical(home))?.pids.find((p) => p.id === id);
  if (r === undefined) throw new Error(`the state file in ${home} has no part ${id}`);
  return r.pid;
}

export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000) {
  await waitFor(async () => (await check()) || undefined, { what, timeoutMs, intervalMs: 100 });
}
