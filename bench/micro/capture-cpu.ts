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
import { encodeProduceRequest } from '../../services/runtime/kafka-request-encoding.ts';
import { itemsSchema, itemValues, TX_ROWS } from './w1-items.ts';

const rows = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 5);
const OID = 16400;

const schema = itemsSchema();
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

const messages: PgoutputMessage[] = [];
for (let t = 0; t * TX_ROWS < rows; t++) {
  const l = lsn(BigInt((t + 1) * 4096));
  messages.push({ tag: 'begin', finalLsn: l, commitTime: 1796190000000000n + BigInt(t), xid: 1000 + t });
  for (let i = t * TX_ROWS; i < Math.min(rows, (t + 1) * TX_ROWS); i++)
    messages.push({
      tag: 'insert',
      relationOid: OID,
      after: itemValues(i) as Tuple,
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
