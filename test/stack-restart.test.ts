/**
 * `brabant restart kafka|registry|registry-db|NODE` restarts one part of a running local stack on
 * its ports and data, and keeps track of it: the state file names the new process, so that
 * `brabant down` stops that one and leaves nothing behind.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../infra/processes.ts';
import { STATE_FILE } from '../infra/stack-state.ts';
import { SchemaRegistryClient } from '../services/protocol/schema-registry.ts';
import {
  brabant,
  cliEnv,
  freeBasePort,
  newHome,
  processesOf,
  recordedPid,
  waitUntil,
} from './support/cli.ts';
import { kafka, uniqueName } from './support/stack.ts';

const home = newHome('restart');
let env: Record<string, string | undefined>;
let out = '';
const field = (re: RegExp) => re.exec(out)![1]!;

beforeAll(async () => {
  env = cliEnv(home, await freeBasePort());
  const up = await brabant(['up', '--insecure', '--detach'], env);
  expect(up.code, up.out).toBe(0);
  out = up.out;
}, 300_000);

afterAll(async () => {
  await brabant(['down', '--purge'], env);
});

async function restart(target: string): Promise<{ before: number; after: number }> {
  const before = recordedPid(home, target);
  const r = await brabant(['restart', target], env);
  expect(r.code, r.out).toBe(0);
  const after = recordedPid(home, target);
  expect(after).not.toBe(before);
  expect(isAlive(before)).toBe(false);
  expect(isAlive(after)).toBe(true);
  return { before, after };
}

describe('brabant restart', () => {
  it('restarts Kafka; its topics are still there and it takes writes', async () => {
    const brokers = [field(/kafka brokers: (\S+)/)];
    const topic = uniqueName('kept');
    const admin = kafka(brokers).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
    await admin.disconnect();

    await restart('kafka');
    const again = kafka(brokers).admin();
    await again.connect();
    try {
      expect(await again.listTopics()).toContain(topic);
      const producer = kafka(brokers).producer();
      await producer.connect();
      await producer.send({ topic, messages: [{ value: 'after restart' }] });
      await producer.disconnect();
    } finally {
      await again.disconnect();
    }
  });

  it('restarts a node; its data is still there', async () => {
    const url = field(/node vl-1: psql '([^']+)'/);
    const before = new pg.Client({ connectionString: url });
    await before.connect();
    await before.query('create table kept (id int primary key); insert into kept values (1)');
    await before.end();

    await restart('vl-1');
    const after = new pg.Client({ connectionString: url });
    await after.connect();
    try {
      expect((await after.query('select id from kept')).rows).toEqual([{ id: 1 }]);
    } finally {
      await after.end();
    }
  });

  it('restarts the registry and its database; ids stay', async () => {
    const url = field(/schema registry: (\S+)/);
    const schema = { type: 'record', name: 'Kept', fields: [{ name: 'id', type: 'long' }] };
    const id = await new SchemaRegistryClient({ url }).register(`${uniqueName('k')}-value`, schema);
    const byId = async () => (await fetch(`${url}/schemas/ids/${id}`).catch(() => undefined))?.status === 200;

    await restart('registry');
    expect(await byId()).toBe(true);
    await restart('registry-db');
    await waitUntil(`schema id ${id} after the registry's database restarted`, byId);
  });

  it('refuses a part the stack does not have, naming those it has', async () => {
    const r = await brabant(['restart', 'wa-9'], env);
    expect(r.code).toBe(1);
    expect(r.out).toContain(
      "the stack has no part 'wa-9'; `brabant restart` takes one of: kafka, vl-1, wa-1",
    );
  });

  it('`brabant down` then stops the restarted processes and leaves none', async () => {
    const restarted = ['kafka', 'vl-1', 'registry', 'registry-db'].map((id) => recordedPid(home, id));
    const down = await brabant(['down'], env);
    expect(down.code, down.out).toBe(0);
    for (const pid of restarted) expect(isAlive(pid)).toBe(false);
    expect(processesOf(home)).toEqual([]);
    expect(existsSync(join(home, STATE_FILE))).toBe(false);
  });
});
