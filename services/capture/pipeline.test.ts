import type { Message } from 'kafkajs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Lsn } from '../protocol/lsn.ts';
import { captureMetrics } from './metrics.ts';
import { type BatchLimits, CapturePipeline } from './pipeline.ts';
import { insert, itemsRelation, itemsSchema, tx } from './test-fixtures.ts';

function setup(limits: Partial<BatchLimits> = {}, opts: { failSends?: number } = {}) {
  const committed: Message[][] = [];
  const durable: Lsn[] = [];
  let failures = opts.failSends ?? 0;
  let clock = 0;
  const p = new CapturePipeline({
    origin: { region: 'vlaanderen', node: 'vl-1' },
    topic: 'brabant.vlaanderen.changes',
    partition: 0,
    sink: {
      commitBatch: async (m) => {
        if (failures > 0) {
          failures--;
          throw new Error('broker down');
        }
        committed.push(m);
      },
    },
    registerSchema: async () => 7,
    describeRelation: async () => itemsSchema(),
    onDurable: (l) => durable.push(l),
    limits: { maxEvents: 1000, maxBytes: 1 << 20, maxAgeMs: 50, maxMessageBytes: 1 << 20, ...limits },
    log: pino({ level: 'silent' }),
    metrics: captureMetrics(),
    now: () => clock,
  });
  return { p, committed, durable, advance: (ms: number) => (clock += ms) };
}

async function feed(p: CapturePipeline, msgs: Parameters<CapturePipeline['handle']>[0][]) {
  for (const m of msgs) await p.handle(m);
}

describe('CapturePipeline', () => {
  it('confirms a transaction only after the Kafka transaction holding it committed', async () => {
    const { p, committed, durable, advance } = setup();
    await feed(p, [itemsRelation, ...tx(100n, [insert(1), insert(2)])]);
    expect(committed).toHaveLength(0);
    expect(durable).toEqual([]);
    advance(10);
    await p.tick();
    expect(committed).toHaveLength(0);
    advance(50);
    await p.tick();
    expect(committed).toHaveLength(1);
    expect(committed[0]!.map((m) => m.headers)).toEqual([
      { 'brabant.commit-lsn': '0/64', 'brabant.index': '0', 'brabant.envelope': '1' },
      { 'brabant.commit-lsn': '0/64', 'brabant.index': '1', 'brabant.envelope': '1' },
    ]);
    expect(committed[0]![0]!.key).toBe('vl-1');
    expect((committed[0]![0]!.value as Buffer).subarray(0, 5)).toEqual(Buffer.from([0, 0, 0, 0, 7]));
    expect(durable).toEqual([140n]);
  });

  it('flushes by event count and never confirms the middle of a transaction', async () => {
    const { p, committed, durable } = setup({ maxEvents: 2 });
    await feed(p, [itemsRelation, ...tx(100n, [insert(1), insert(2), insert(3), insert(4), insert(5)])]);
    // 5 events: two full batches flushed mid-transaction, the last event still batched
    expect(committed.map((b) => b.length)).toEqual([2, 2]);
    expect(durable).toEqual([]);
    await p.flush();
    expect(durable).toEqual([140n]);
  });

  it('confirms a transaction with nothing to send at once when nothing is pending', async () => {
    const { p, durable } = setup();
    await feed(p, [itemsRelation, ...tx(100n, [insert(1)], { origin: true })]);
    expect(durable).toEqual([140n]);
  });

  it('does not confirm when the Kafka commit fails, and keeps the batch for a retry', async () => {
    const { p, committed, durable } = setup({}, { failSends: 1 });
    await feed(p, [itemsRelation, ...tx(100n, [insert(1)])]);
    await expect(p.flush()).rejects.toThrow(/broker down/);
    expect(durable).toEqual([]);
    await p.flush();
    expect(committed).toHaveLength(1);
    expect(durable).toEqual([140n]);
  });

  it('refuses an event over the message size limit, naming table and key', async () => {
    const { p } = setup({ maxMessageBytes: 2048 });
    const [begin, commit] = tx(100n, []);
    await feed(p, [itemsRelation, begin!, insert(42, 'x'.repeat(5000))]);
    // the last event of a transaction is encoded when its commit arrives
    await expect(p.handle(commit!)).rejects.toThrow(
      /INSERT of public.items with key \{"id":"42"\} encodes to \d+ bytes/,
    );
  });

  it('bounds memory by batch size on a large transaction', async () => {
    const { p, committed } = setup({ maxEvents: 100 });
    const changes = Array.from({ length: 1050 }, (_, i) => insert(i));
    await feed(p, [itemsRelation, ...tx(100n, changes)]);
    expect(committed).toHaveLength(10);
    expect(p.pendingEvents).toBe(50);
    expect(itemsSchema().fingerprint).toBeTruthy();
  });

  it('never sends changes of Brabant own tables (tombstones, conflict log)', async () => {
    const { p, committed } = setup();
    const own = { ...itemsRelation, oid: 999, schema: 'brabant', name: 'tombstones' };
    await feed(p, [
      itemsRelation,
      own,
      ...tx(100n, [{ tag: 'insert', relationOid: 999, after: ['t', '{}'] }, insert(1)]),
    ]);
    await p.flush();
    expect(committed.flat().map((m) => m.headers?.['brabant.index'])).toEqual(['0']);
  });
});
