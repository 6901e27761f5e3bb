/**
 * kill -9 of capture at each crash point: before produce, between the Kafka commit and the slot
 * confirm, in the middle of a source transaction spread over several Kafka transactions, and at
 * a random moment. After a restart, the topic (read with a plain read_committed consumer) holds
 * every change exactly once, in order.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { decodePosition } from '../services/protocol/headers.ts';
import { captureNames, startCapture } from './support/services.ts';
import { createDatabase, node, region, stack } from './support/stack.ts';
import { assertNoDuplicates, readTopic, type TopicEvent } from './support/topic.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function setup() {
  const db = await createDatabase(node('vl-1'));
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query('create table t (id int primary key, batch int)');
  cleanups.push(async () => {
    await client.end();
    await db.drop();
  });
  return { names: captureNames(node('vl-1'), db.url), client };
}

/** Inserts `txs` transactions of `rows` rows each; returns the ids written. */
async function write(client: pg.Client, from: number, txs: number, rows: number): Promise<number[]> {
  const ids: number[] = [];
  for (let t = 0; t < txs; t++) {
    const start = from + t * rows;
    await client.query('insert into t select g, $2 from generate_series($1::int, $1::int + $3 - 1) g', [
      start,
      t,
      rows,
    ]);
    for (let i = 0; i < rows; i++) ids.push(start + i);
  }
  return ids;
}

const ids = (events: TopicEvent[]) =>
  events.filter((e) => e.value.op === 'INSERT').map((e) => (e.value.after as { id: number }).id);

/** Stops the capture gracefully and reads the whole topic once more: exactly the expected ids, once each, in order. */
async function expectExactlyOnce(topic: string, expected: number[]) {
  const events = await readTopic(
    region('vlaanderen').kafkaBrokers,
    stack().registryUrl,
    topic,
    (es) => es.length >= expected.length,
  );
  // anything late (a duplicate) would come right behind: give it a moment, then read all again
  await new Promise((r) => setTimeout(r, 1500));
  const all = await readTopic(
    region('vlaanderen').kafkaBrokers,
    stack().registryUrl,
    topic,
    (es) => es.length >= events.length,
    30_000,
  );
  assertNoDuplicates(all);
  expect(ids(all)).toEqual(expected);
  // positions strictly increase: commit order, then index inside the transaction
  const pos = all.map((e) => {
    const p = decodePosition(e.headers)!;
    return [p.commitLsn, p.index] as const;
  });
  for (let i = 1; i < pos.length; i++) {
    const [a, b] = [pos[i - 1]!, pos[i]!];
    expect(a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]), `position ${i}`).toBe(true);
  }
}

describe('capture crash recovery', () => {
  for (const point of ['capture.before-produce:3', 'capture.after-commit:3']) {
    it(`loses and doubles nothing when killed at ${point}`, async () => {
      const { names, client } = await setup();
      const env = { BRABANT_CAPTURE_BATCH_EVENTS: '20' };
      const first = startCapture(names, { ...env, BRABANT_FAILPOINTS: point });
      cleanups.push(() => first.kill());
      await first.waitForLog(/capture session starting/);
      const written = await write(client, 1, 30, 10);
      expect(await first.exited).not.toBe(0);
      expect(first.lines.join('\n')).toContain(`failpoint ${point.split(':')[0]} reached`);
      const second = startCapture(names, env);
      cleanups.push(() => second.kill());
      await expectExactlyOnce(names.topic, written);
    });
  }

  it('loses and doubles nothing when killed in the middle of a source transaction', async () => {
    const { names, client } = await setup();
    // batches of exactly 300 events: the kill comes after the second, so the restart resumes
    // after event 599. The fill timer (20 ms by default) would cut a batch short whenever the
    // walsender delivers slower than capture consumes; at 2 s it only sends the last 200 events.
    const env = { BRABANT_CAPTURE_BATCH_EVENTS: '300', BRABANT_CAPTURE_BATCH_MS: '2000' };
    const first = startCapture(names, { ...env, BRABANT_FAILPOINTS: 'capture.after-commit:2' });
    cleanups.push(() => first.kill());
    await first.waitForLog(/capture session starting/);
    const written = await write(client, 1, 1, 2000);
    expect(await first.exited).not.toBe(0);
    const second = startCapture(names, env);
    cleanups.push(() => second.kill());
    await second.waitForLog(/resumeAfter":"[0-9A-F]+\/[0-9A-F]+#599"/);
    await expectExactlyOnce(names.topic, written);
  });

  it('loses and doubles nothing across repeated kill -9 at random moments under load', async () => {
    const { names, client } = await setup();
    const env = { BRABANT_CAPTURE_BATCH_EVENTS: '25', BRABANT_CAPTURE_BATCH_MS: '5' };
    let current = startCapture(names, env);
    await current.waitForLog(/capture session starting/);
    const written: number[] = [];
    const seed = Date.now() % 100000;
    console.log(`random kill seed ${seed}`);
    let rnd = seed;
    const next = () => {
      rnd = (rnd * 16807) % 2147483647;
      return rnd / 2147483647;
    };
    for (let round = 0; round < 4; round++) {
      const writing = write(client, 1 + written.length, 20, 10).then((w) => written.push(...w));
      await new Promise((r) => setTimeout(r, 100 + next() * 600));
      await current.kill('SIGKILL');
      await writing;
      current = startCapture(names, env);
      await current.waitForLog(/capture session starting/);
    }
    cleanups.push(() => current.kill());
    await expectExactlyOnce(names.topic, written);
  });
});
