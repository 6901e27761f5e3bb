/**
 * A registry that keeps its schemas: the stack's registry stores them in PostgreSQL, so no restart
 * (of the registry, of its database, of the whole stack with `brabant down` / `up --reuse`) changes
 * or loses a schema id — the loss that made apply dead-letter well-framed records as "poison".
 */
import { rmSync } from 'node:fs';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../infra/stack.ts';
import { restartComponent } from '../infra/stack-control.ts';
import { SchemaRegistryClient } from '../services/protocol/schema-registry.ts';
import { brabant, cliEnv, freeBasePort, newHome, processesOf, waitUntil } from './support/cli.ts';
import { createDatabase, node, region, stack, uniqueName } from './support/stack.ts';

const record = (name: string, fields: string[]) => ({
  type: 'record',
  name,
  fields: fields.map((f) => ({ name: f, type: 'long' })),
});

/** Registers a few schemas (one under two subjects: one id, as in Confluent); returns subject → id. */
async function registerSome(url: string): Promise<Map<string, { id: number; text: string }>> {
  const client = new SchemaRegistryClient({ url });
  const out = new Map<string, { id: number; text: string }>();
  const schemas = [
    [`${uniqueName('a')}-value`, record('A', ['id'])],
    [`${uniqueName('b')}-value`, record('B', ['id', 'qty'])],
    [`${uniqueName('c')}-value`, record('A', ['id'])],
  ] as const;
  for (const [subject, schema] of schemas) {
    out.set(subject, { id: await client.register(subject, schema), text: JSON.stringify(schema) });
  }
  return out;
}

/** Every id answers its own schema and every subject its id, through a client with no cache. */
async function expectSameIds(url: string, ids: Map<string, { id: number; text: string }>): Promise<void> {
  const fresh = new SchemaRegistryClient({ url });
  for (const [subject, { id, text }] of ids) {
    const res = await fetch(`${url}/schemas/ids/${id}`);
    expect(res.status, `schema id ${id} after the restart`).toBe(200);
    expect(((await res.json()) as { schema: string }).schema).toBe(text);
    expect(await fresh.lookup(subject, text)).toBe(id);
  }
}

const registryAnswers = (url: string, id: number) => async () =>
  (await fetch(`${url}/schemas/ids/${id}`).catch(() => undefined))?.status === 200;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A stack of the registry alone (its database too), on the shared stack's Kafka and node. */
async function registryOnly(env: Record<string, string> = {}): Promise<{ s: Stack; home: string }> {
  const home = newHome('registry');
  const s = await startStack(
    { regions: [{ name: 'vlaanderen', nodes: 1 }], kafka: 'shared' },
    {
      workDir: home,
      basePort: 0,
      env: {
        BRABANT_KAFKA_BROKERS: region('vlaanderen').kafkaBrokers.join(','),
        BRABANT_PG_URLS: `vl-1=${node('vl-1').url}`,
        ...env,
      },
    },
  );
  cleanups.push(async () => {
    await s.stop();
    rmSync(home, { recursive: true, force: true });
  });
  return { s, home };
}

describe('a registry that keeps its schemas', () => {
  it('keeps every id across a restart of the registry and of its database; new ones come after', async () => {
    const { s, home } = await registryOnly();
    expect(s.pids.map((p) => p.name)).toEqual(['registry-db', 'schema-registry']);
    const ids = await registerSome(s.registryUrl);
    expect(new Set([...ids.values()].map((v) => v.id)).size).toBe(2);

    await restartComponent(home, 'registry', () => {});
    await expectSameIds(s.registryUrl, ids);

    await restartComponent(home, 'registry-db', () => {});
    // The registry keeps running; its pooled connections reconnect to the restarted database.
    await waitUntil('registry answering after its database restarted', registryAnswers(s.registryUrl, 1));
    await expectSameIds(s.registryUrl, ids);

    const next = await new SchemaRegistryClient({ url: s.registryUrl }).register(
      `${uniqueName('d')}-value`,
      record('D', ['id']),
    );
    expect(next).toBeGreaterThan(Math.max(...[...ids.values()].map((v) => v.id)));
  });

  it('keeps every id across `brabant down` and `brabant up --reuse` of the whole stack', async () => {
    const home = newHome('durable');
    const env = cliEnv(home, await freeBasePort());
    cleanups.push(async () => {
      await brabant(['down', '--purge'], env);
    });
    const first = await brabant(['up', '--insecure', '--detach'], env);
    expect(first.code, first.out).toBe(0);
    const url = /schema registry: (\S+)/.exec(first.out)![1]!;
    const ids = await registerSome(url);

    const down = await brabant(['down'], env);
    expect(down.code, down.out).toBe(0);
    expect(processesOf(home)).toEqual([]);
    const again = await brabant(['up', '--insecure', '--reuse', '--detach'], env);
    expect(again.code, again.out).toBe(0);
    expect(/schema registry: (\S+)/.exec(again.out)![1]).toBe(url);
    await expectSameIds(url, ids);
  }, 300_000);

  it('keeps the schemas in the database BRABANT_REGISTRY_DB_URL names, starting no database of its own', async () => {
    const db = await createDatabase(node('wa-1'), 'registry');
    cleanups.push(db.drop);
    const { s, home } = await registryOnly({ BRABANT_REGISTRY_DB_URL: db.url });
    expect(s.pids.map((p) => p.name)).toEqual(['schema-registry']);
    const ids = await registerSome(s.registryUrl);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const stored = await c.query('select count(*)::int as n from content');
      expect(stored.rows[0].n).toBeGreaterThanOrEqual(2);
    } finally {
      await c.end();
    }
    await restartComponent(home, 'registry', () => {});
    await expectSameIds(s.registryUrl, ids);
  });

  it('starts neither a registry nor its database when BRABANT_REGISTRY_URL names one', async () => {
    const { s } = await registryOnly({ BRABANT_REGISTRY_URL: stack().registryUrl });
    expect(s.pids).toEqual([]);
    expect(s.registryUrl).toBe(stack().registryUrl);
    const ids = await registerSome(s.registryUrl);
    await expectSameIds(stack().registryUrl, ids);
  });
});
