/**
 * `brabant down` stops what the stack started whatever is connected (PostgreSQL by fast shutdown,
 * then immediate, then SIGKILL), returns only once none of its processes is left, and keeps the
 * state file until then; `brabant up` after a stack that was killed finds and clears what it left.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive } from '../infra/processes.ts';
import { STATE_FILE } from '../infra/stack-state.ts';
import {
  brabant,
  cliEnv,
  freeBasePort,
  newHome,
  processesOf,
  recordedPid,
  spawnBrabant,
  waitUntil,
} from './support/cli.ts';

const field = (out: string, re: RegExp) => re.exec(out)![1]!;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  // The server ends these sessions; that must not become an unhandled error here.
  c.on('error', () => {});
  await c.connect();
  return c;
}

describe('stopping the local stack', () => {
  it('`brabant down` with clients connected stops every process, and `up --reuse` starts again', async () => {
    const home = newHome('down');
    const env = cliEnv(home, await freeBasePort());
    cleanups.push(() => brabant(['down', '--purge'], env));
    const up = await brabant(['up', '--insecure', '--detach'], env);
    expect(up.code, up.out).toBe(0);
    const vl = field(up.out, /node vl-1: psql '([^']+)'/);
    const wa = field(up.out, /node wa-1: psql '([^']+)'/);

    const setup = await connect(vl);
    await setup.query('create table kept (id int primary key); insert into kept values (1)');
    await setup.end();
    // What a smart shutdown waits for for ever: a transaction left open, a long query, an idle session.
    const inTx = await connect(vl);
    await inTx.query('begin; lock table kept in access exclusive mode');
    const sleeper = await connect(wa);
    const sleeping = sleeper.query('select pg_sleep(600)').then(
      () => 'finished',
      (err: Error) => err.message,
    );
    const idle = await connect(wa);
    cleanups.push(async () => {
      for (const c of [inTx, sleeper, idle]) await c.end().catch(() => {});
    });

    const started = Date.now();
    const down = await brabant(['down'], env);
    expect(down.code, down.out).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(processesOf(home)).toEqual([]);
    expect(existsSync(join(home, STATE_FILE))).toBe(false);
    expect(await sleeping).toMatch(/terminating connection due to administrator command/);

    const again = await brabant(['up', '--insecure', '--reuse', '--detach'], env);
    expect(again.code, again.out).toBe(0);
    const after = await connect(vl);
    try {
      expect((await after.query('select id from kept')).rows).toEqual([{ id: 1 }]);
    } finally {
      await after.end();
    }
  }, 300_000);

  it('`brabant up` after a SIGKILLed stack clears what it left, with one message, and starts', async () => {
    const home = newHome('killed');
    const env = cliEnv(home, await freeBasePort());
    cleanups.push(() => brabant(['down', '--purge'], env));
    const fg = spawnBrabant(['up', '--insecure'], env);
    await waitUntil(
      'the foreground `brabant up` to be ready',
      () => fg.output().includes('Press Ctrl-C'),
      240_000,
    );
    const vl = field(fg.output(), /node vl-1: psql '([^']+)'/);
    const client = await connect(vl);
    await client.query('begin; select 1');
    cleanups.push(() => client.end().catch(() => {}));
    const left = ['kafka', 'wa-1', 'registry-db', 'registry'].map((id) => recordedPid(home, id));
    const postmaster = Number(
      readFileSync(join(home, 'data', 'vl-1', 'postmaster.pid'), 'utf8').split('\n')[0],
    );

    // As a crash would: the CLI and one node's postmaster, with no chance to clean up.
    fg.child.kill('SIGKILL');
    process.kill(postmaster, 'SIGKILL');
    await waitUntil('the killed postmaster to be gone', () => !isAlive(postmaster));
    expect(left.every(isAlive)).toBe(true);

    const again = await brabant(['up', '--insecure', '--reuse', '--detach'], env);
    expect(again.code, again.out).toBe(0);
    const messages = again.out.split('\n').filter((l) => /ended without `brabant down`/.test(l));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/stopped schema-registry \(pid \d+\).*kafka \(pid \d+\)/);
    expect(messages[0]).toContain('removed the stale postmaster.pid of vl-1');
    for (const pid of left) expect(isAlive(pid)).toBe(false);

    const after = await connect(field(again.out, /node vl-1: psql '([^']+)'/));
    await after.end();
  }, 300_000);
});
