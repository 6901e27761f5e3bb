import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodable, type ProduceMessage, type ProduceRequest } from './kafka-request-encoding.ts';
import { kafkajsOriginal, seeded } from './kafkajs-original.fixture.ts';
import { kafkajsPatched, produceEncoderPatched } from './kafkajs-patch.ts';

const require = createRequire(import.meta.url);
const base = 'kafkajs/src/protocol';

type Factory = (args: Record<string, unknown>) => { encode(): Promise<{ buffer: Buffer }> };
type Framing = (args: {
  correlationId: number;
  clientId: string;
  request: { apiKey: number; apiVersion: number; encode(): Promise<unknown> };
}) => Promise<{ buffer: Buffer }>;

const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };

function messages(rnd: () => number, n: number): ProduceMessage[] {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const bytes = (len: number) => Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
  return Array.from({ length: n }, (_, i) => {
    const m: ProduceMessage = {
      key: pick([`k${i}`, bytes(8), null, undefined, 'clé-ü-€', '']),
      value: pick([bytes(Math.floor(rnd() * 300)), bytes(2_000 + Math.floor(rnd() * 3_000)), `v${i}`, null]),
    };
    if (rnd() < 0.8)
      m.headers = {
        'brabant.position': pick([bytes(16), `0/${i.toString(16)}`]),
        'brabant.source': 'vl-1',
        ...(rnd() < 0.3 ? { 'brabant.many': [bytes(3), 'two', ''] } : {}),
        ...(rnd() < 0.2 ? { 'ünïcode-kéy': '€' } : {}),
      };
    return m;
  });
}

function topicData(rnd: () => number): ProduceRequest['topicData'] {
  return Array.from({ length: 1 + Math.floor(rnd() * 2) }, (_, t) => ({
    topic: `brabant.vlaanderen-${t}.changes`,
    partitions: Array.from({ length: 1 + Math.floor(rnd() * 3) }, (_, p) => ({
      partition: p,
      firstSequence: Math.floor(rnd() * 100_000),
      messages: messages(rnd, Math.floor(rnd() * 120)),
    })),
  }));
}

afterEach(() => vi.restoreAllMocks());

describe('Kafka requests written in one buffer (kafkajs patch)', () => {
  it('is what kafkajs loads for Produce requests and for every request framing', async () => {
    expect([kafkajsPatched, produceEncoderPatched]).toEqual([true, true]);
    await import('kafkajs');
    expect(require(`${base}/requests/produce/v3/request.js`)).not.toBe(
      kafkajsOriginal(`${base}/requests/produce/v3/request.js`),
    );
  });

  it('writes the same bytes as kafkajs for Produce v3–v7 requests: keys, values, headers of every kind', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_633_600_123);
    const ours = require(`${base}/requests/produce/v7/request.js`) as Factory;
    const theirs = kafkajsOriginal<Factory>(`${base}/requests/produce/v3/request.js`);
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = seeded(seed);
      const args = {
        acks: seed % 3 === 0 ? 1 : -1,
        timeout: 30_000,
        transactionalId: seed % 2 === 0 ? `brabant-capture-vl-${seed}` : null,
        producerId: Long.fromValue(seed % 5 === 0 ? -1 : 1_000_000_007 * seed),
        producerEpoch: seed % 7,
        compression: 0,
        topicData: topicData(rnd),
      };
      const a = (await ours(args).encode()).buffer;
      const b = (await theirs(args).encode()).buffer;
      expect(a.equals(b), `seed ${seed}: ${a.length} vs ${b.length} bytes`).toBe(true);
    }
  }, 60_000);

  it('leaves compressed requests and records with their own timestamps to kafkajs', async () => {
    const data = [{ topic: 't', partitions: [{ partition: 0, messages: [{ value: 'x', timestamp: '5' }] }] }];
    expect(encodable(0, data)).toBe(false);
    expect(encodable(1, [{ topic: 't', partitions: [{ partition: 0, messages: [{ value: 'x' }] }] }])).toBe(
      false,
    );
    vi.spyOn(Date, 'now').mockReturnValue(1_764_633_600_123);
    const ours = require(`${base}/requests/produce/v3/request.js`) as Factory;
    const theirs = kafkajsOriginal<Factory>(`${base}/requests/produce/v3/request.js`);
    const args = { acks: -1, timeout: 1000, compression: 0, topicData: data };
    expect((await ours(args).encode()).buffer.equals((await theirs(args).encode()).buffer)).toBe(true);
  });

  it('frames a request (size, header, body) as kafkajs does', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_633_600_123);
    const produce = require(`${base}/requests/produce/v3/request.js`) as Factory;
    const Encoder = require(`${base}/encoder.js`) as new () => { writeInt32(v: number): unknown };
    const ours = require(`${base}/request.js`) as Framing;
    const theirs = kafkajsOriginal<Framing>(`${base}/request.js`);
    const requests = [
      {
        apiKey: 0,
        apiVersion: 7,
        encode: () => produce({ acks: -1, timeout: 5, topicData: topicData(seeded(3)) }).encode(),
      },
      { apiKey: 3, apiVersion: 6, encode: async () => new Encoder().writeInt32(-1) },
    ];
    for (const request of requests)
      for (const clientId of ['brabant-apply-wa-1', '', 'ü'])
        expect(
          (await ours({ correlationId: 42, clientId, request })).buffer.equals(
            (await theirs({ correlationId: 42, clientId, request })).buffer,
          ),
        ).toBe(true);
  }, 60_000);
});
