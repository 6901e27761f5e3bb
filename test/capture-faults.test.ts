/**
 * Bad input and faults around capture: each gets a clear outcome, and nothing is lost.
 */

import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureKafkaJars, type RunningKafka, startKafka } from '../infra/kafka/kafka.ts';
import { freePort } from '../infra/processes.ts';
import { captureNames, startCapture } from './support/services.ts';
import { createDatabase, node, region, stack } from './support/stack.ts';
import { assertNoDuplicates, readTopic, type TopicEvent } from './support/topic.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function setup(sql = 'create table t (id int primary key, v text)') {
  const db = await createDatabase(node('vl-1'));
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query(sql);
  cleanups.push(async () => {
    await client.end();
    await db.drop();
  });
  return { names: captureNames(node('vl-1'), db.url), client };
}

function run(...args: Parameters<typeof startCapture>) {
  const p = startCapture(...args);
  cleanups.push(() => p.kill());
  return p;
}

const ids = (events: TopicEvent[]) =>
  events.filter((e) => e.value.op === 'INSERT').map((e) => (e.value.after as { id: number }).id);
const brokers = () => region('vlaanderen').kafkaBrokers;

describe('capture faults', () => {
  it('captures a table without replica identity insert-only (issue 12), naming it and both fixes', async () => {
    const { names, client } = await setup(
      'create table good (id int primary key); create table bad (a int, b text)',
    );
    const p = run(names);
    await p.waitForLog(/capture session starting/);
    expect(p.lines.join('\n')).toMatch(
      /table public.bad has no replica identity: only its inserts and truncates are captured .*add a primary key or run ALTER TABLE .*bad.* REPLICA IDENTITY FULL/,
    );
    expect(p.lines.join('\n')).not.toContain('public.good has');
    await client.query(`insert into bad values (1, 'x')`);
    await client.query('update bad set b = b');
    const events = await readTopic(brokers(), stack().registryUrl, names.topic, (es) => es.length >= 1);
    expect(events[0]!.value).toMatchObject({ op: 'INSERT', table: 'bad', key: {} });
  });

  it('adds a configured table the publication lacks, and captures it', async () => {
    const { names, client } = await setup(
      'create table a (id int primary key); create table b (id int primary key)',
    );
    await client.query(`create publication ${names.publication} for table a`);
    const p = run(names, { BRABANT_CAPTURE_TABLES: 'public.a,public.b' });
    await p.waitForLog(/publication lacked a configured table; added it/);
    await p.waitForLog(/capture session starting/);
    await client.query('insert into b values (7)');
    const events = await readTopic(brokers(), stack().registryUrl, names.topic, (es) => es.length >= 1);
    expect(events[0]!.value).toMatchObject({ op: 'INSERT', table: 'b' });
  });

  it('stops with SLOT_LOST when the slot is dropped under it, and will not silently recreate it', async () => {
    const { names, client } = await setup();
    const p = run(names);
    await p.waitForLog(/capture session starting/);
    await client.query(`insert into t values (1, 'a')`);
    await readTopic(brokers(), stack().registryUrl, names.topic, (es) => es.length >= 1);
    // capture reconnects at once after its walsender is terminated: drop in the gap, retrying
    for (let attempt = 0; ; attempt++) {
      await client.query(
        'select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1',
        [names.slot],
      );
      try {
        await client.query('select pg_drop_replication_slot($1)', [names.slot]);
        break;
      } catch (err) {
        if (attempt > 50) throw err;
      }
    }
    expect(await p.exited).toBe(1);
    expect(p.lines.join('\n')).toMatch(
      /SLOT_LOST: (replication slot \S+ no longer exists|replication slot \S+ does not exist, but)/,
    );
    const again = run(names);
    expect(await again.exited).toBe(1);
    expect(again.lines.join('\n')).toContain('BRABANT_CAPTURE_RECREATE_SLOT=true');
  });

  it('fences a second capture of the same node with a clear message, the first one goes on', async () => {
    const { names, client } = await setup();
    const first = run(names);
    await first.waitForLog(/capture session starting/);
    const second = run(names);
    expect(await second.exited).toBe(1);
    expect(second.lines.join('\n')).toMatch(
      /SLOT_IN_USE: replication slot \S+ is in use by backend pid \d+: another capture/,
    );
    await client.query(`insert into t values (1, 'still flowing')`);
    const events = await readTopic(brokers(), stack().registryUrl, names.topic, (es) => es.length >= 1);
    expect(ids(events)).toEqual([1]);
  });

  it('splits a row over the topic message limit into parts (issue 12), and the slot moves past it', async () => {
    const { names, client } = await setup();
    const p = run(names, { BRABANT_CAPTURE_MAX_MESSAGE_BYTES: '65536' });
    await p.waitForLog(/capture session starting/);
    await client.query(`insert into t values (1, 'small')`);
    await client.query(`insert into t values (42, repeat('x', 200000))`);
    await client.query(`insert into t values (2, 'after')`);
    await p.waitForLog(/event over the topic message limit: split into parts/);
    const events = await readTopic(brokers(), stack().registryUrl, names.topic, (es) => ids(es).includes(2));
    const parts = events.filter((e) => e.headers['brabant.chunk'] !== undefined);
    expect(parts.length).toBeGreaterThan(1);
    expect(ids(events)).toEqual([1, 2]);
  });

  it('retries while the registry is unreachable and resumes without loss when it returns', async () => {
    const { names, client } = await setup();
    const proxy = await registryProxy(stack().registryUrl);
    cleanups.push(() => proxy.close());
    proxy.up = false;
    const p = run(names, { BRABANT_REGISTRY_URL: proxy.url, BRABANT_CAPTURE_RETRY_MAX_MS: '1000' });
    await p.waitForLog(/capture session starting/);
    await client.query(`insert into t values (1, 'a'), (2, 'b')`);
    await p.waitForLog(/REGISTRY_ERROR.*capture session failed; retrying/);
    proxy.up = true;
    await client.query(`insert into t values (3, 'c')`);
    const events = await readTopic(brokers(), stack().registryUrl, names.topic, (es) => es.length >= 3);
    assertNoDuplicates(events);
    expect(ids(events)).toEqual([1, 2, 3]);
  });

  it('retries while Kafka is unreachable, at start and mid-stream, and loses nothing', async () => {
    const { names, client } = await setup();
    const libs = await ensureKafkaJars();
    const dir = mkdtempSync(join(tmpdir(), 'brabant-kafka-outage-'));
    const spec = {
      name: 'kafka-outage',
      brokerPort: await freePort(),
      controllerPort: await freePort(),
      dataDir: join(dir, 'data'),
      logFile: join(dir, 'kafka.log'),
      libsDir: libs,
    };
    const bootstrap = `127.0.0.1:${spec.brokerPort}`;
    let kafka: RunningKafka | undefined;
    cleanups.push(async () => kafka?.process.stop());
    // Kafka down at start: capture keeps retrying
    const p = run(names, {
      BRABANT_KAFKA_BROKERS: bootstrap,
      BRABANT_CAPTURE_BATCH_EVENTS: '10',
      BRABANT_CAPTURE_RETRY_MAX_MS: '1000',
    });
    await p.waitForLog(/KAFKA_UNAVAILABLE.*capture session failed; retrying/);
    kafka = await startKafka(spec);
    await p.waitForLog(/capture session starting/, 90_000);
    const written: number[] = [];
    for (let i = 1; i <= 20; i++) written.push(i);
    await client.query('insert into t select g, null from generate_series(1, 20) g');
    await readTopic([bootstrap], stack().registryUrl, names.topic, (es) => es.length >= 20);
    // Kafka down mid-stream: writes go on, capture retries, the slot stays where Kafka was
    await kafka.process.stop();
    await client.query('insert into t select g, null from generate_series(21, 60) g');
    for (let i = 21; i <= 60; i++) written.push(i);
    await p.waitForLog(/capture session failed; retrying/);
    kafka = await startKafka(spec);
    const events = await readTopic(
      [bootstrap],
      stack().registryUrl,
      names.topic,
      (es) => es.length >= 60,
      120_000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const all = await readTopic(
      [bootstrap],
      stack().registryUrl,
      names.topic,
      (es) => es.length >= events.length,
    );
    assertNoDuplicates(all);
    expect(ids(all)).toEqual(written);
  });
});

/** An HTTP proxy in front of the registry that can be switched off (connections dropped). */
async function registryProxy(
  target: string,
): Promise<{ url: string; up: boolean; close: () => Promise<void> }> {
  const state = { up: true };
  const server: Server = createServer(async (req, res) => {
    if (!state.up) {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
    const upstream = await fetch(`${target}${req.url}`, {
      method: req.method,
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
      body,
    });
    res.writeHead(upstream.status, {
      'content-type': upstream.headers.get('content-type') ?? 'application/json',
    });
    res.end(Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  });
}

describe('capture fencing', () => {
  it('a newer producer with the same transactional id fences the older one, which stops with FENCED', async () => {
    const { KafkaEventSink } = await import('../services/capture/kafka-sink.ts');
    const { createKafka } = await import('../services/runtime/kafka.ts');
    const { pino } = await import('pino');
    const log = pino({ level: 'silent' });
    const topic = `fence_${Date.now()}`;
    const k = createKafka({ brokers: brokers(), clientId: 'fence-test', log });
    const admin = k.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
    await admin.disconnect();
    const opts = { transactionalId: `brabant-capture-fence-${Date.now()}`, topic, chunkBytes: 1 << 20, log };
    const zombie = new KafkaEventSink(k, opts);
    const fresh = new KafkaEventSink(k, opts);
    cleanups.push(
      () => zombie.disconnect(),
      () => fresh.disconnect(),
    );
    await zombie.connect();
    await zombie.commitBatch([{ key: 'n', value: Buffer.from('before') }]);
    await fresh.connect();
    await expect(zombie.commitBatch([{ key: 'n', value: Buffer.from('zombie') }])).rejects.toMatchObject({
      code: 'FENCED',
    });
    await fresh.commitBatch([{ key: 'n', value: Buffer.from('after') }]);
    const consumer = (await import('./support/stack.ts'))
      .kafka(brokers())
      .consumer({ groupId: `fence-${Date.now()}`, readUncommitted: false });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const seen: string[] = [];
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(message.value!.toString());
          if (seen.includes('after')) resolve();
        },
      });
    });
    await consumer.disconnect();
    expect(seen).toEqual(['before', 'after']);
  });
});
