/**
 * Restarts and recoveries lose nothing (issue 13's fault suite): writers in both regions record
 * every write whose COMMIT returned, capture and apply run on both nodes, and the faults the issue
 * found are injected one after another — the registry restarted, Kafka's broker killed with
 * kill -9, a node stopped with PostgreSQL's immediate shutdown, an apply stalled (SIGSTOP, then
 * SIGCONT), a node's slot dropped under writes and repaired with `brabant resync`, the whole stack
 * stopped with `brabant down` and started with `brabant up --reuse` while every client stays
 * connected. After each, both nodes must hold the same rows and every committed write, and the
 * figures are printed: writes, lost, seconds from the fault healed to both nodes converged.
 *
 * It restarts Kafka, the registry and the nodes, so it runs on a stack of its own (its own folder,
 * ports and processes, as test/stack-restart.test.ts does), never on the shared test stack.
 *
 * Size: BRABANT_FAULTS_SECONDS (seconds of writing around each fault, default 2; an apply is
 * stalled that long, at least), BRABANT_FAULTS_ROUNDS (how often the whole sequence runs, default
 * 1). `npm run test:faults` runs it longer.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../infra/processes.ts';
import { canonical, startPart } from '../infra/stack-control.ts';
import { readState } from '../infra/stack-state.ts';
import { brabant, cliEnv, freeBasePort, newHome, recordedPid, waitUntil } from './support/cli.ts';
import { dropSlot, type Pair, replicationPair, type Side, tableRows } from './support/pair.ts';
import { missingWrites, type RecordedWriter, startRecordedWriter } from './support/recorded-writes.ts';
import type { ServiceProcess } from './support/services.ts';

const SECONDS = Number(process.env.BRABANT_FAULTS_SECONDS ?? 2);
const ROUNDS = Number(process.env.BRABANT_FAULTS_ROUNDS ?? 1);
const CONVERGE_MS = 90_000 + SECONDS * 3_000;
const TABLE = 'w';

const home = newHome('faults');
let env: Record<string, string | undefined>;
let pair: Pair;
let writers: RecordedWriter[] = [];
const capture = new Map<Side, ServiceProcess>();
const apply = new Map<Side, ServiceProcess>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Capture of a side (again), ready once its slot streams. */
async function startCapture(side: Side, extra: Record<string, string> = {}): Promise<void> {
  const p = pair.capture(side, { BRABANT_CAPTURE_RETRY_MAX_MS: '1000', ...extra });
  capture.set(side, p);
  await p.waitForLog(/capture session starting/, 60_000);
}

async function startApply(side: Side): Promise<void> {
  const p = pair.apply(side);
  apply.set(side, p);
  await p.waitForLog(/apply session running/, 60_000);
}

/** A side's own client again (the node was stopped under it). */
async function reconnect(side: Side): Promise<void> {
  await side.client.end().catch(() => {});
  const c = new pg.Client({ connectionString: side.url });
  c.on('error', () => {});
  await c.connect();
  side.client = c;
}

beforeAll(async () => {
  env = cliEnv(home, await freeBasePort(16));
  const up = await brabant(['up', '--insecure', '--detach'], env);
  expect(up.code, up.out).toBe(0);
  const stack = readState(canonical(home))!;
  pair = await replicationPair(`create table ${TABLE} (id text primary key, v text not null)`, stack);
  for (const s of pair.sides) s.client.on('error', () => {});
  await Promise.all(pair.sides.flatMap((s) => [startCapture(s), startApply(s)]));
  writers = [startRecordedWriter(pair.vl, TABLE, 'vl'), startRecordedWriter(pair.wa, TABLE, 'wa')];
}, 240_000);

afterAll(async () => {
  for (const w of writers) await w.stop();
  await pair?.cleanup();
  await brabant(['down', '--purge'], env);
}, 120_000);

/**
 * Runs one fault under writes: writes for SECONDS, `fault` (which returns once it is healed),
 * writes for SECONDS more, then waits for both nodes to hold the same rows and every committed
 * write, and prints the figures.
 */
async function underWrites(name: string, fault: () => Promise<void>): Promise<void> {
  const before = writers.reduce((n, w) => n + w.committed.size, 0);
  for (const w of writers) w.resume();
  await sleep(SECONDS * 1000);
  await fault();
  const healed = Date.now();
  await sleep(SECONDS * 1000);
  await Promise.all(writers.map((w) => w.pause()));
  const quiet = Date.now();
  const writes = writers.reduce((n, w) => n + w.committed.size, 0) - before;
  // waitConverged's loop, but on running out of time it still gives the rows: the figures say what was lost
  let rows: string[][] = [];
  const deadline = Date.now() + CONVERGE_MS;
  for (;;) {
    rows = await Promise.all(pair.sides.map((s) => tableRows(s.client, TABLE)));
    const same = JSON.stringify(rows[0]) === JSON.stringify(rows[1]);
    if (same && missingWrites(rows[0]!, writers).length === 0) break;
    if (Date.now() > deadline) break;
    await sleep(200);
  }
  const converged = Date.now();
  const seconds = (converged - healed) / 1000;
  const missing = rows.map((r) => missingWrites(r, writers));
  const lost = Math.max(...missing.map((m) => m.length));
  const uncertain = writers.reduce((n, w) => n + w.uncertain(), 0);
  const all = writers.reduce((n, w) => n + w.committed.size, 0);
  console.log(
    `[faults] ${name}: ${writes} writes (${all} in all, ${uncertain} uncertain so far), lost ${lost}, ` +
      `converged ${seconds.toFixed(1)} s after it healed (${((converged - quiet) / 1000).toFixed(1)} s after the last write); ${pair.sides.map((s, i) => `${s.names.nodeId} ${rows[i]!.length} rows`).join(', ')}`,
  );
  const which = pair.sides
    .map((s, i) => `${s.names.nodeId} lacks ${missing[i]!.length}: ${missing[i]!.slice(0, 10).join(' ')}`)
    .join('; ');
  expect(lost, `${name}: committed writes missing on a node (${which})`).toBe(0);
  expect(rows[1], `${name}: the nodes differ`).toEqual(rows[0]);
  expect(writes).toBeGreaterThan(0);
}

const timeout = CONVERGE_MS + 120_000 + SECONDS * 4_000;
const postmasterOf = (id: string) =>
  Number(readFileSync(join(canonical(home), 'data', id, 'postmaster.pid'), 'utf8').split('\n')[0]);
const dbOf = (url: string) => new URL(url).pathname.slice(1);

describe('restarts and recoveries lose nothing', () => {
  for (let round = 1; round <= ROUNDS; round++) {
    const of = ROUNDS > 1 ? ` (round ${round})` : '';

    it(`the registry restarted; services started again resolve every schema id${of}`, {
      timeout,
    }, async () => {
      await underWrites(`registry restart${of}`, async () => {
        const r = await brabant(['restart', 'registry'], env);
        expect(r.code, r.out).toBe(0);
        // fresh caches: every id they meet is asked of the restarted registry
        await Promise.all(pair.sides.map((s) => apply.get(s)!.kill('SIGTERM')));
        await capture.get(pair.vl)!.kill('SIGKILL');
        await Promise.all([...pair.sides.map(startApply), startCapture(pair.vl)]);
      });
    });

    it(`Kafka's broker killed with kill -9 and started again${of}`, { timeout }, async () => {
      await underWrites(`Kafka kill -9${of}`, async () => {
        const pid = recordedPid(home, 'kafka');
        process.kill(pid, 'SIGKILL');
        await waitUntil('the killed broker gone', () => !isAlive(pid));
        await sleep(SECONDS * 500);
        await startPart(home, 'kafka');
      });
    });

    it(`a node being applied to stopped with an immediate shutdown and started again${of}`, {
      timeout,
    }, async () => {
      await underWrites(`PostgreSQL immediate stop of wa-1${of}`, async () => {
        const postmaster = postmasterOf('wa-1');
        process.kill(postmaster, 'SIGQUIT');
        await waitUntil('wa-1 stopped', () => !isAlive(postmaster));
        await sleep(SECONDS * 500);
        await startPart(home, 'wa-1');
        await reconnect(pair.wa);
      });
    });

    it(`an apply stalled (SIGSTOP) and resumed (SIGCONT)${of}`, { timeout }, async () => {
      await underWrites(`stalled apply of wa-1${of}`, async () => {
        const pid = apply.get(pair.wa)!.pid;
        process.kill(pid, 'SIGSTOP');
        // long enough, in the longer run, for its group membership to lapse (10 s)
        await sleep(Math.max(SECONDS, 3) * 1000);
        process.kill(pid, 'SIGCONT');
      });
    });

    it(`a node's slot dropped under writes, created anew, and the gap resynced${of}`, {
      timeout,
    }, async () => {
      await underWrites(`slot dropped, then resync of vl-1${of}`, async () => {
        const { vl } = pair;
        const old = capture.get(vl)!;
        await dropSlot(vl);
        expect(await old.exited).toBe(1);
        expect(old.lines.join('\n')).toMatch(/SLOT_LOST: .*brabant resync/);
        // writes go on while no slot exists: wa-1 never gets them from the stream
        await sleep(SECONDS * 1000);
        await startCapture(vl, { BRABANT_CAPTURE_RECREATE_SLOT: 'true' });
        const r = await brabant(['resync', 'vl-1', '--database', dbOf(vl.url), '--timeout', '120'], env);
        expect(r.code, r.out).toBe(0);
        expect(r.out).toMatch(/has sent all of it to Kafka/);
      });
    });

    it(`the whole stack stopped with \`brabant down\` and started with \`up --reuse\`, clients connected${of}`, {
      timeout: timeout + 120_000,
    }, async () => {
      await underWrites(`whole-stack restart${of}`, async () => {
        const down = await brabant(['down'], env);
        expect(down.code, down.out).toBe(0);
        const up = await brabant(['up', '--insecure', '--reuse', '--detach'], env);
        expect(up.code, up.out).toBe(0);
        await Promise.all(pair.sides.map(reconnect));
      });
    });
  }
});
