/**
 * The local stack itself: real Kafka (transactional produce, read_committed group consume), the
 * real schema registry, and logical slots on real PostgreSQL nodes in both regions.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { SchemaRegistryClient } from '../services/protocol/schema-registry.ts';
import { createDatabase, kafka, region, stack, uniqueName } from './support/stack.ts';

describe('local stack', () => {
  it('produces transactionally and consumes only committed messages with a group', async () => {
    const brokers = region('vlaanderen').kafkaBrokers;
    const k = kafka(brokers);
    const topic = uniqueName('t');
    const admin = k.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();

    const producer = k.producer({
      transactionalId: uniqueName('tx'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    const committed = await producer.transaction();
    await committed.send({
      topic,
      messages: [
        { key: 'a', value: 'one' },
        { key: 'a', value: 'two' },
      ],
    });
    await committed.commit();
    const aborted = await producer.transaction();
    await aborted.send({ topic, messages: [{ key: 'a', value: 'aborted' }] });
    await aborted.abort();
    const last = await producer.transaction();
    await last.send({ topic, messages: [{ key: 'a', value: 'three' }] });
    await last.commit();
    await producer.disconnect();

    const consumer = k.consumer({ groupId: uniqueName('g'), readUncommitted: false });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const seen: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out; saw ${seen.join(',')}`)), 30_000);
      void consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(message.value!.toString());
          if (seen.includes('three')) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
    await consumer.disconnect();
    expect(seen).toEqual(['one', 'two', 'three']);
  });

  it('registers a schema in the real registry, fetches it by id, and checks compatibility', async () => {
    const registry = new SchemaRegistryClient({ url: stack().registryUrl });
    const subject = `${uniqueName('s')}-value`;
    const v1 = { type: 'record', name: 'Item', fields: [{ name: 'id', type: 'long' }] };
    const id = await registry.register(subject, v1);
    expect(id).toBeGreaterThan(0);
    const fetched = JSON.parse(await new SchemaRegistryClient({ url: stack().registryUrl }).schemaById(id));
    expect(fetched).toMatchObject({ type: 'record', name: 'Item' });
    // Adding a field with a default is backward compatible; changing a field's type is not.
    const v2 = { ...v1, fields: [...v1.fields, { name: 'qty', type: 'int', default: 0 }] };
    expect((await registry.isCompatible(subject, v2)).compatible).toBe(true);
    const bad = { ...v1, fields: [{ name: 'id', type: 'string' }] };
    expect((await registry.isCompatible(subject, bad)).compatible).toBe(false);
    await expect(registry.register(subject, bad)).rejects.toMatchObject({ code: 'SCHEMA_INCOMPATIBLE' });
  });

  it('creates a logical replication slot on a node of each region', async () => {
    for (const r of stack().regions) {
      const n = r.nodes[0]!;
      const db = await createDatabase(n);
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        const settings = await c.query(
          `select name, setting from pg_settings where name in ('wal_level', 'track_commit_timestamp') order by name`,
        );
        expect(settings.rows).toEqual([
          { name: 'track_commit_timestamp', setting: 'on' },
          { name: 'wal_level', setting: 'logical' },
        ]);
        const slot = uniqueName('slot');
        await c.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
        const res = await c.query('select plugin, database from pg_replication_slots where slot_name = $1', [
          slot,
        ]);
        expect(res.rows).toEqual([{ plugin: 'pgoutput', database: db.name }]);
        await c.query('select pg_drop_replication_slot($1)', [slot]);
      } finally {
        await c.end();
        await db.drop();
      }
    }
  });
});
