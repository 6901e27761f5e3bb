/**
 * Readers for the fidelity tests: change events as a Brabant reader sees them (the registry, the
 * ChangeDecoder, and the ChunkReassembler in front of it, exactly as apply must use it: one
 * reassembler per partition, fed every record in offset order), the capture dead letters of a
 * node, and a service's metrics.
 */
import type { KafkaMessage } from 'kafkajs';
import { ChangeDecoder, type DecodedChange } from '../../services/protocol/change-decoder.ts';
import { ChunkReassembler, HEADER_CHUNK } from '../../services/protocol/chunks.ts';
import { SchemaRegistryClient } from '../../services/protocol/schema-registry.ts';
import { DEAD_LETTER_TOPIC } from '../../services/protocol/topics.ts';
import type { ServiceProcess } from './services.ts';
import { kafka, uniqueName } from './stack.ts';

async function consume(
  brokers: string[],
  topic: string,
  onMessage: (partition: number, m: KafkaMessage) => Promise<void>,
  done: () => boolean,
  timeoutMs: number,
): Promise<void> {
  const consumer = kafka(brokers).consumer({
    groupId: uniqueName('fid'),
    readUncommitted: false,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${topic}: condition not met within ${timeoutMs} ms`)),
        timeoutMs,
      );
      if (done()) {
        clearTimeout(timer);
        resolve();
        return;
      }
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            // a reader error is the test's answer, not something for kafkajs to retry
            await onMessage(partition, message).catch(reject);
            if (done()) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
}

/** Decoded change events of a topic (split events joined) until `done(changes)` holds. */
export async function readChanges(
  brokers: string[],
  registryUrl: string,
  topic: string,
  done: (changes: DecodedChange[]) => boolean,
  timeoutMs = 60_000,
): Promise<DecodedChange[]> {
  const decoder = new ChangeDecoder(new SchemaRegistryClient({ url: registryUrl }));
  const reassemblers = new Map<number, ChunkReassembler>();
  const changes: DecodedChange[] = [];
  await consume(
    brokers,
    topic,
    async (partition, m) => {
      const r = reassemblers.get(partition) ?? new ChunkReassembler();
      reassemblers.set(partition, r);
      const out = r.push({ value: m.value!, chunk: m.headers?.[HEADER_CHUNK]?.toString() });
      if (out.kind === 'whole' || out.kind === 'joined') changes.push(await decoder.decode(out.value));
    },
    () => done(changes),
    timeoutMs,
  );
  return changes;
}

export interface CaptureDeadLetter {
  headers: Record<string, string>;
  body: {
    stage: string;
    node: string;
    table: string;
    code: string;
    reason: string;
    fix: string;
    tx: { commitLsn: string; index: number };
    change: { op: string; before: Record<string, unknown> | null; after: Record<string, unknown> | null };
  };
}

/** Capture's dead letters of one node, until `done(letters)` holds. */
export async function readDeadLetters(
  brokers: string[],
  nodeId: string,
  done: (letters: CaptureDeadLetter[]) => boolean,
  timeoutMs = 60_000,
): Promise<CaptureDeadLetter[]> {
  const letters: CaptureDeadLetter[] = [];
  await consume(
    brokers,
    DEAD_LETTER_TOPIC,
    async (_p, m) => {
      if (m.key?.toString() !== nodeId) return;
      const headers = Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, String(v)]));
      if (headers['brabant.stage'] !== 'capture') return;
      letters.push({ headers, body: JSON.parse(m.value!.toString()) });
    },
    () => done(letters),
    timeoutMs,
  );
  return letters;
}

/** One sample of a service's metrics (Prometheus text), e.g. `brabant_capture_dead_letters_total{code="X"}`. */
export async function metric(p: ServiceProcess, series: string): Promise<number | undefined> {
  const line = await p.waitForLog(/metrics endpoint listening/);
  const { port } = (JSON.parse(line) as { address: { port: number } }).address;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const hit = text.split('\n').find((l) => l.startsWith(`${series} `));
  return hit === undefined ? undefined : Number(hit.slice(series.length + 1));
}

export interface ApplyDeadLetter {
  headers: Record<string, string>;
  body: { schema: string; table: string; op: string; after: Record<string, unknown> | null };
}

/** The dead letters apply on node `targetNode` sent, until `done` says enough. */
export async function readApplyDeadLetters(
  brokers: string[],
  targetNode: string,
  done: (letters: ApplyDeadLetter[]) => boolean,
  timeoutMs = 60_000,
): Promise<ApplyDeadLetter[]> {
  const letters: ApplyDeadLetter[] = [];
  await consume(
    brokers,
    DEAD_LETTER_TOPIC,
    async (_p, m) => {
      const headers = Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, String(v)]));
      if (headers['brabant.target-node'] !== targetNode || headers['brabant.source-topic'] !== undefined)
        return;
      letters.push({ headers, body: JSON.parse(m.value!.toString()) });
    },
    () => done(letters),
    timeoutMs,
  );
  return letters;
}
