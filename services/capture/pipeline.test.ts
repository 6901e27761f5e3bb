import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ChangeDecoder } from '../protocol/change-decoder.ts';
import { ChunkReassembler } from '../protocol/chunks.ts';
import type { Lsn } from '../protocol/lsn.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { OutMessage } from './kafka-sink.ts';
import { captureMetrics } from './metrics.ts';
import { type BatchLimits, CapturePipeline } from './pipeline.ts';
import { insert, itemsRelation, itemsSchema, tx } from './test-fixtures.ts';

const schemas = new Map<number, string>();
const decoder = () => new ChangeDecoder({ schemaById: async (id) => schemas.get(id)! });

function setup(
  limits: Partial<BatchLimits> = {},
  opts: {
    failSends?: number;
    register?: (subject: string) => Promise<number>;
    /** Awaited by every Kafka commit before it answers (a commit held in flight). */
    commitGate?: () => Promise<void>;
  } = {},
) {
  const committed: OutMessage[][] = [];
  const metrics = captureMetrics();
  const ids = new Map<string, number>();
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
        if (opts.commitGate) await opts.commitGate();
      },
    },
    registerSchema: async (subject, schema) => {
      if (opts.register) await opts.register(subject);
      const text = JSON.stringify(schema);
      let id = ids.get(text);
      if (id === undefined) {
        id = 7 + ids.size;
        ids.set(text, id);
        schemas.set(id, text);
      }
      return id;
    },
    describeRelation: async () => itemsSchema(),
    onDurable: (l) => durable.push(l),
    limits: { maxEvents: 1000, maxBytes: 1 << 20, maxAgeMs: 50, maxMessageBytes: 1 << 20, ...limits },
    log: pino({ level: 'silent' }),
    metrics,
    now: () => clock,
  });
  return { p, committed, durable, metrics, advance: (ms: number) => (clock += ms) };
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

  it('fills the next batch while one commits, and confirms nothing of it before its own commit', async () => {
    const gates: (() => void)[] = [];
    const { p, committed, durable } = setup(
      { maxEvents: 2 },
      { commitGate: () => new Promise<void>((resolve) => gates.push(resolve)) },
    );
    const settle = () => new Promise((r) => setTimeout(r, 10));
    // a full batch goes to Kafka, and intake goes on without waiting for its commit
    await feed(p, [itemsRelation, ...tx(100n, [insert(1), insert(2)])]);
    expect(committed).toHaveLength(1);
    expect(durable).toEqual([]);
    // a transaction with nothing to send that ends meanwhile waits for the commit before it
    await feed(p, tx(200n, []));
    // (the assembler holds each transaction's last event until its commit marks it last)
    const [begin, third, fourth, commit] = tx(300n, [insert(3), insert(4)]);
    await feed(p, [begin!, third!, fourth!]);
    expect(durable).toEqual([]);
    // the next full batch waits for the one in flight (one Kafka transaction at a time)
    let fed = false;
    const feeding = p.handle(commit!).then(() => {
      fed = true;
    });
    await settle();
    expect(fed).toBe(false);
    expect(committed).toHaveLength(1);
    gates.shift()!();
    await feeding;
    expect(committed).toHaveLength(2);
    // 300's batch is in flight: it is confirmed with its commit, not before
    expect(durable).toEqual([140n, 240n]);
    const flushed = p.flush();
    await settle();
    gates.shift()!();
    await flushed;
    expect(durable).toEqual([140n, 240n, 340n]);
    expect(committed.flat().map((m) => m.headers?.['brabant.commit-lsn'])).toEqual([
      '0/64',
      '0/64',
      '0/12C',
      '0/12C',
    ]);
  });

  it('hands back a batch whose commit failed in flight, and throws at the next message', async () => {
    const { p, committed, durable } = setup({ maxEvents: 2 }, { failSends: 1 });
    await feed(p, [itemsRelation, ...tx(100n, [insert(1), insert(2)])]);
    const [begin, third, commit] = tx(200n, [insert(3)]);
    // the batch handed back is full again: the next message finds the failure
    await expect(p.handle(begin!)).rejects.toThrow(/broker down/);
    expect(durable).toEqual([]);
    await feed(p, [third!, commit!]);
    await p.flush();
    expect(committed.flat().map((m) => m.headers?.['brabant.commit-lsn'])).toEqual(['0/64', '0/64', '0/C8']);
    expect(durable).toEqual([140n, 240n]);
  });

  it('splits an event over the message size limit into parts that join back into it', async () => {
    const { p, committed } = setup({ maxMessageBytes: 4096 });
    await feed(p, [itemsRelation, ...tx(100n, [insert(1), insert(42, 'x'.repeat(10000))])]);
    await p.flush();
    const sent = committed.flat();
    // each record leaves room under the limit for its key, headers and batch header
    expect(sent.every((m) => (m.value as Buffer).length <= 4096 - 1024)).toBe(true);
    const parts = sent.filter((m) => m.headers?.['brabant.chunk'] !== undefined);
    expect(parts.length).toBeGreaterThan(2);
    // every part carries the event's own position (the read-back after a restart sees it)
    expect(new Set(parts.map((m) => m.headers?.['brabant.index']))).toEqual(new Set(['1']));
    const r = new ChunkReassembler();
    const joined = sent.map((m) =>
      r.push({ value: m.value as Buffer, chunk: m.headers?.['brabant.chunk'] as string | undefined }),
    );
    const whole = joined.filter((j) => j.kind === 'whole' || j.kind === 'joined');
    expect(whole).toHaveLength(2);
    const event = await decoder().decode((whole[1] as { value: Buffer }).value);
    expect(event).toMatchObject({
      kind: 'row',
      op: 'INSERT',
      key: { id: '42' },
      after: { payload: 'x'.repeat(10000) },
    });
  });

  it('dead-letters a change it cannot encode, with a marker at its position, and goes on', async () => {
    const { p, committed, metrics } = setup();
    await feed(p, [
      itemsRelation,
      ...tx(100n, [insert(1), { tag: 'insert', relationOid: 16400, after: ['nope', 'x'] }, insert(3)]),
    ]);
    await p.flush();
    const sent = committed.flat();
    expect(
      sent.map(
        (m) => `${m.topic === 'brabant.deadletter' ? m.topic : 'changes'}#${m.headers?.['brabant.index']}`,
      ),
    ).toEqual(['changes#0', 'changes#1', 'brabant.deadletter#1', 'changes#2']);
    const marker = await decoder().decode(sent[1]!.value as Buffer);
    expect(marker).toMatchObject({ kind: 'control', control: 'MESSAGE', prefix: 'brabant.deadletter' });
    const letter = JSON.parse((sent[2]!.value as Buffer).toString());
    expect(letter).toMatchObject({
      stage: 'capture',
      table: 'public.items',
      code: 'VALUE_UNREPRESENTABLE',
      reason: expect.stringContaining("public.items.id: 'nope' is not a valid bigint"),
      tx: { commitLsn: '0/64', index: 1 },
      change: { op: 'INSERT', after: { id: 'nope', payload: 'x' } },
    });
    expect(sent[2]!.headers?.['brabant.table']).toBe('public.items');
    expect(metrics.deadLetters.get({ code: 'VALUE_UNREPRESENTABLE' })).toBe(1);
  });

  it('pauses a table whose version cannot be registered, and resumes it with its next Relation message', async () => {
    let refuse = true;
    const { p, committed, metrics } = setup(
      {},
      {
        register: async (subject) => {
          if (refuse && subject.includes('public.items'))
            throw new BrabantError('SCHEMA_INCOMPATIBLE', 'schema registry POST answered 409: incompatible');
          return 7;
        },
      },
    );
    await feed(p, [itemsRelation, ...tx(100n, [insert(1)])]);
    await p.flush();
    expect(metrics.pausedTables.get({ table: 'public.items' })).toBe(1);
    expect(committed.flat().map((m) => (m.topic === 'brabant.deadletter' ? m.topic : 'changes'))).toEqual([
      'changes',
      'brabant.deadletter',
    ]);
    refuse = false;
    await feed(p, [itemsRelation, ...tx(200n, [insert(2)])]);
    await p.flush();
    expect(metrics.pausedTables.get({ table: 'public.items' })).toBe(0);
    const last = committed.flat().at(-1)!;
    expect(await decoder().decode(last.value as Buffer)).toMatchObject({ kind: 'row', key: { id: '2' } });
  });

  it('fails the session (nothing confirmed) when the registry is unreachable, rather than pausing', async () => {
    const { p, durable } = setup(
      {},
      {
        register: async () => {
          throw new BrabantError('REGISTRY_ERROR', 'unreachable', { retriable: true });
        },
      },
    );
    await expect(feed(p, [itemsRelation])).rejects.toMatchObject({ code: 'REGISTRY_ERROR' });
    expect(durable).toEqual([]);
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
