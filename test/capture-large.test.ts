/**
 * A large source transaction streams through with memory bounded by the batch size, not by the
 * transaction. npm test runs 200,000 rows; BRABANT_TEST_LARGE_ROWS=1000000 runs the size.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { captureNames, startCapture } from './support/services.ts';
import { createDatabase, kafka, node, region, uniqueName } from './support/stack.ts';

const ROWS = Number(process.env.BRABANT_TEST_LARGE_ROWS ?? 200_000);
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

describe('capture of a large transaction', () => {
  it(`streams one ${ROWS}-row transaction with bounded memory, every row once`, {
    timeout: 900_000,
  }, async () => {
    const db = await createDatabase(node('vl-1'));
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    cleanups.push(async () => {
      await client.end();
      await db.drop();
    });
    await client.query(
      'create table items (id bigint primary key, region text, qty int, payload text, updated_at timestamptz)',
    );
    const names = captureNames(node('vl-1'), db.url);
    const capture = startCapture(names);
    cleanups.push(() => capture.kill());
    await capture.waitForLog(/capture session starting/);
    const started = Date.now();
    await client.query(
      `insert into items select g, 'vlaanderen', g % 100, md5(g::text) || md5((g+1)::text) || md5((g+2)::text), now() from generate_series(1, $1) g`,
      [ROWS],
    );
    const committedAt = Date.now();

    // count with a plain read_committed consumer: every index of the transaction exactly once
    const consumer = kafka(region('vlaanderen').kafkaBrokers).consumer({
      groupId: uniqueName('large'),
      readUncommitted: false,
    });
    await consumer.connect();
    await consumer.subscribe({ topic: names.topic, fromBeginning: true });
    const seen = new Uint8Array(ROWS);
    let count = 0;
    let duplicates = 0;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${count} of ${ROWS} events after 15 minutes`)),
        880_000,
      );
      void consumer.run({
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) {
            const index = Number(m.headers!['brabant.index']!.toString());
            if (seen[index]) duplicates++;
            seen[index] = 1;
            count++;
          }
          if (count >= ROWS) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
    const doneAt = Date.now();
    await consumer.disconnect();
    const peak = capture.peakRss();
    console.log(
      `large transaction: ${ROWS} rows; insert ${((committedAt - started) / 1000).toFixed(1)} s; ` +
        `in Kafka ${((doneAt - committedAt) / 1000).toFixed(1)} s after commit (${Math.round(ROWS / ((doneAt - committedAt) / 1000))} rows/s); ` +
        `capture peak RSS ${(peak / 1024 / 1024).toFixed(0)} MB`,
    );
    expect(duplicates).toBe(0);
    expect(count).toBe(ROWS);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(300 * 1024 * 1024);
  });
});
