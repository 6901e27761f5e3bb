/**
 * A resync chunk through the capture pipeline (pure): the high watermark's rows become resync
 * records of the table, minus those the log changed between the watermarks, each with its
 * original version; the slot is not confirmed past an open low watermark.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ChangeDecoder } from '../protocol/change-decoder.ts';
import { type Lsn, lsn } from '../protocol/lsn.ts';
import { RESYNC_HIGH_PREFIX, RESYNC_LOW_PREFIX } from '../protocol/resync.ts';
import type { OutMessage } from './kafka-sink.ts';
import { captureMetrics } from './metrics.ts';
import type { PgoutputMessage } from './pgoutput/messages.ts';
import { CapturePipeline } from './pipeline.ts';
import { insert, itemsRelation, itemsSchema, tx } from './test-fixtures.ts';

const schemas = new Map<number, string>();

function setup(skipThrough?: { commitLsn: Lsn; index: number }) {
  const committed: OutMessage[] = [];
  const durable: Lsn[] = [];
  const metrics = captureMetrics();
  const p = new CapturePipeline({
    origin: { region: 'vlaanderen', node: 'vl-1' },
    topic: 'brabant.vlaanderen.changes',
    partition: 0,
    sink: { commitBatch: async (m) => void committed.push(...m) },
    registerSchema: async (_subject, schema) => {
      const id = schemas.size + 20;
      schemas.set(id, JSON.stringify(schema));
      return id;
    },
    describeRelation: async () => itemsSchema(),
    onDurable: (l) => durable.push(l),
    limits: { maxEvents: 1000, maxBytes: 1 << 20, maxAgeMs: 50, maxMessageBytes: 1 << 20 },
    ...(skipThrough ? { skipThrough } : {}),
    log: pino({ level: 'silent' }),
    metrics,
  });
  return { p, committed, durable, metrics };
}

const message = (prefix: string, content: unknown): PgoutputMessage => ({
  tag: 'message',
  transactional: true,
  lsn: lsn(1n),
  prefix,
  content: Buffer.from(JSON.stringify(content)),
});
const chunk = { resync: 'rs-1', schema: 'public', name: 'items', chunk: 0 };
const columns = [
  { name: 'id', typeOid: 20, typeMod: -1, key: true },
  { name: 'payload', typeOid: 25, typeMod: -1, key: false },
];
const high = (kind: 'rows' | 'tombstones', rows: (string | null)[][]) =>
  message(RESYNC_HIGH_PREFIX, { ...chunk, kind, columns, rows });

/** low (tx 100), an insert of id 2 (tx 200), the high with rows 1, 2, 3 (tx 300). */
const stream = (): PgoutputMessage[] => [
  itemsRelation,
  ...tx(50n, [insert(9)]),
  ...tx(100n, [message(RESYNC_LOW_PREFIX, chunk)]),
  ...tx(200n, [insert(2, 'newer')]),
  ...tx(300n, [
    high('rows', [
      ['1700000000000001', null, '1', 'one'],
      ['1700000000000002', null, '2', 'older two'],
      ['1700000000000003', 'brabant_wa-1', '3', 'three'],
    ]),
  ]),
];

async function decodeAll(sent: OutMessage[]) {
  const decoder = new ChangeDecoder({ schemaById: async (id) => schemas.get(id)! });
  return Promise.all(sent.map((m) => decoder.decode(m.value as Buffer, m.headers as Record<string, string>)));
}

describe('a resync chunk in the capture pipeline', () => {
  it('sends the rows the log did not change between the watermarks, each with its original version', async () => {
    const { p, committed, metrics } = setup();
    for (const m of stream()) await p.handle(m);
    await p.flush();
    const events = await decodeAll(committed);
    const at300 = committed.filter((m) => m.headers!['brabant.commit-lsn'] === '0/12C');
    expect(at300.map((m) => m.headers!['brabant.envelope'])).toEqual(['1', '2', '2']);
    const [marker, one, three] = events.slice(-3);
    expect(marker).toMatchObject({ kind: 'control', control: 'MESSAGE', prefix: RESYNC_HIGH_PREFIX });
    expect(JSON.parse((marker as { content: Buffer }).content.toString())).toEqual({
      ...chunk,
      kind: 'rows',
      sent: 2,
      dropped: 1,
    });
    // row 2 is dropped: the insert between the watermarks carries its newer state
    expect(one).toMatchObject({
      op: 'INSERT',
      key: { id: '1' },
      after: { id: '1', payload: 'one' },
      tx: { index: 1, last: false },
      resync: { id: 'rs-1', versionTs: 1_700_000_000_000_001n, versionNode: 'vl-1' },
    });
    // a row this node got from a peer keeps that peer as its version's node
    expect(three).toMatchObject({
      key: { id: '3' },
      tx: { index: 2, last: true },
      resync: { versionTs: 1_700_000_000_000_003n, versionNode: 'wa-1' },
    });
    expect(metrics.resyncRows.get({ kind: 'row', outcome: 'sent' })).toBe(2);
    expect(metrics.resyncRows.get({ kind: 'row', outcome: 'dropped' })).toBe(1);
  });

  it('sends remembered deletes as DELETEs of their keys, with an oldest version when it is unknown', async () => {
    const { p, committed } = setup();
    for (const m of [itemsRelation, ...tx(300n, [high('tombstones', [[null, null, '4']])])])
      await p.handle(m);
    await p.flush();
    const [, del] = await decodeAll(committed);
    expect(del).toMatchObject({
      op: 'DELETE',
      key: { id: '4' },
      after: null,
      resync: { versionTs: null, versionNode: 'vl-1' },
    });
  });

  it('does not confirm the slot past an open low watermark, so a restart streams the window again', async () => {
    const { p, durable } = setup();
    const s = stream();
    const highAt = s.findIndex((m) => m.tag === 'begin' && m.finalLsn === 300n);
    for (const m of s.slice(0, highAt)) await p.handle(m);
    await p.flush();
    // tx 50 ends at 90: confirmed; the low's (140) and the insert's (240) are held back
    expect(durable.at(-1)).toBe(90n);
    for (const m of s.slice(highAt)) await p.handle(m);
    await p.flush();
    expect(durable.at(-1)).toBe(340n);
  });

  it('drops the same rows after a restart mid-window, and skips what Kafka already has', async () => {
    const first = setup();
    for (const m of stream()) await first.p.handle(m);
    await first.p.flush();
    const sentFirst = first.committed.map(
      (m) => `${m.headers!['brabant.commit-lsn']}#${m.headers!['brabant.index']}`,
    );
    // the restart streams again from the slot (before the low); Kafka holds up to the first resync row
    const again = setup({ commitLsn: lsn(300n), index: 1 });
    for (const m of stream()) await again.p.handle(m);
    await again.p.flush();
    const sentAgain = again.committed.map(
      (m) => `${m.headers!['brabant.commit-lsn']}#${m.headers!['brabant.index']}`,
    );
    expect(sentAgain).toEqual(['0/12C#2']);
    expect(sentFirst.at(-1)).toBe('0/12C#2');
    const [three] = await decodeAll(again.committed);
    expect(three).toMatchObject({ key: { id: '3' }, resync: { versionNode: 'wa-1' } });
  });

  it('dead-letters a high watermark it cannot read, at its position, and goes on', async () => {
    const { p, committed } = setup();
    for (const m of [
      itemsRelation,
      ...tx(300n, [message(RESYNC_HIGH_PREFIX, { ...chunk, kind: 'rows', columns, rows: [['x']] })]),
      ...tx(400n, [insert(5)]),
    ])
      await p.handle(m);
    await p.flush();
    expect(committed.map((m) => m.topic)).toEqual([
      'brabant.vlaanderen.changes',
      'brabant.deadletter',
      'brabant.vlaanderen.changes',
    ]);
    expect(JSON.parse((committed[1]!.value as Buffer).toString())).toMatchObject({
      code: 'UNDECODABLE',
      reason: expect.stringContaining(
        'a resync chunk cannot be sent: resync watermark brabant.resync.high: row 0',
      ),
    });
  });
});
