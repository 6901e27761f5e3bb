/**
 * Capture's JavaScript per row, without PostgreSQL or Kafka: W1's rows (the items table, 100-row
 * transactions) as decoded pgoutput messages through the capture pipeline (assembler, Avro and
 * record headers, batching), and each committed batch written as the Produce request the patched
 * kafkajs sends, timed in-process. For quick A/B of capture's hot path on a noisy machine (the
 * end-to-end figures are W1's and W5's): `npx tsx bench/micro/capture-cpu.ts [rows] [rounds]`.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { captureMetrics } from '../../services/capture/metrics.ts';
import type { PgoutputMessage, RelationMessage, Tuple } from '../../services/capture/pgoutput/messages.ts';
import { CapturePipeline } from '../../services/capture/pipeline.ts';
import { lsn } from '../../services/protocol/lsn.ts';
import type { PgTypeInfo } from '../../services/protocol/pg-types.ts';
import { buildTableSchema } from '../../services/protocol/table-schema.ts';
import { encodeProduceRequest } from '../../services/runtime/kafka-request-encoding.ts';

const rows = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 5);
const TX_ROWS = 100;
const OID = 16400;

const pgt = (name: string, varlena = false): PgTypeInfo => ({
  oid: 0,
  schema: 'pg_catalog',
  name,
  typtype: 'b',
  category: 'X',
  varlena,
});
const schema = buildTableSchema({
  schema: 'public',
  name: 'items',
  columns: [
    { name: 'id', type: pgt('int8'), typeMod: -1, isKey: true },
    { name: 'region', type: pgt('text', true), typeMod: -1, isKey: false },
    { name: 'qty', type: pgt('int4'), typeMod: -1, isKey: false },
    { name: 'payload', type: pgt('text', true), typeMod: -1, isKey: false },
    { name: 'updated_at', type: pgt('timestamptz'), typeMod: -1, isKey: false },
  ],
});
const relation: RelationMessage = {
  tag: 'relation',
  oid: OID,
  schema: 'public',
  name: 'items',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', isKey: true, typeOid: 20, typeMod: -1 },
    { name: 'region', isKey: false, typeOid: 25, typeMod: -1 },
    { name: 'qty', isKey: false, typeOid: 23, typeMod: -1 },
    { name: 'payload', isKey: false, typeOid: 25, typeMod: -1 },
    { name: 'updated_at', isKey: false, typeOid: 1184, typeMod: -1 },
  ],
};

const payload = 'x'.repeat(100);
const messages: PgoutputMessage[] = [];
for (let t = 0; t * TX_ROWS < rows; t++) {
  const l = lsn(BigInt((t + 1) * 4096));
  messages.push({ tag: 'begin', finalLsn: l, commitTime: 1796190000000000n + BigInt(t), xid: 1000 + t });
  for (let i = t * TX_ROWS; i < Math.min(rows, (t + 1) * TX_ROWS); i++)
    messages.push({
      tag: 'insert',
      relationOid: OID,
      after: [
        String(i + 1),
        'vlaanderen',
        String(i % 1000),
        payload,
        '2026-12-02 07:00:00.123456+00',
      ] as Tuple,
    });
  messages.push({
    tag: 'commit',
    flags: 0,
    commitLsn: l,
    endLsn: lsn(BigInt((t + 1) * 4096 + 40)),
    commitTime: 0n,
  });
}

async function round(): Promise<{ pipeline: number; produce: number; bytes: number }> {
  const batches: Parameters<CapturePipeline['deps']['sink']['commitBatch']>[0][] = [];
  const p = new CapturePipeline({
    origin: { region: 'vlaanderen', node: 'vl-1' },
    topic: 'brabant.vlaanderen.changes',
    partition: 0,
    sink: { commitBatch: async (m) => void batches.push(m) },
    registerSchema: async () => 1,
    describeRelation: async () => schema,
    onDurable: () => {},
    limits: { maxEvents: 5000, maxBytes: 4 << 20, maxAgeMs: 20, maxMessageBytes: 1 << 20 },
    log: pino({ level: 'silent' }),
    metrics: captureMetrics(),
  });
  let t = performance.now();
  await p.handle(relation);
  for (const m of messages) await p.handle(m);
  await p.flush();
  const pipeline = performance.now() - t;
  t = performance.now();
  let bytes = 0;
  for (const batch of batches) {
    const req = encodeProduceRequest(
      {
        transactionalId: 'brabant-capture-vl-1',
        acks: -1,
        timeout: 30_000,
        producerId: 7n,
        producerEpoch: 0,
        transactional: true,
        now: Date.now(),
        topicData: [
          {
            topic: 'brabant.vlaanderen.changes',
            partitions: [{ partition: 0, firstSequence: 0, messages: batch.map(({ topic: _t, ...m }) => m) }],
          },
        ],
      },
      () => 0,
    );
    bytes += req.length;
  }
  return { pipeline, produce: performance.now() - t, bytes };
}

const us = (ms: number) => ((ms * 1000) / rows).toFixed(2);
for (let r = 1; r <= rounds; r++) {
  const x = await round();
  console.log(
    `round ${r}: pipeline ${us(x.pipeline)} µs/row, produce request ${us(x.produce)} µs/row, ${(x.bytes / rows).toFixed(0)} bytes/row`,
  );
}
