/**
 * Reads a change topic the way a consumer that knows nothing of Brabant would: a plain
 * read_committed consumer, the Confluent framing, schemas fetched by id from the registry's
 * Confluent REST API, and avsc with its default options.
 */
import avro from 'avsc';
import type { KafkaMessage } from 'kafkajs';
import { kafka, uniqueName } from './stack.ts';

export interface TopicEvent {
  offset: string;
  partition: number;
  key: string;
  headers: Record<string, string>;
  schemaId: number;
  /** The record decoded with the writer's schema from the registry. */
  value: Record<string, unknown>;
}

export class PlainDecoder {
  private readonly types = new Map<number, avro.Type>();
  constructor(private readonly registryUrl: string) {}

  async decode(buf: Buffer): Promise<{ schemaId: number; value: Record<string, unknown> }> {
    if (buf[0] !== 0) throw new Error(`not Confluent framing: first byte ${buf[0]}`);
    const id = buf.readInt32BE(1);
    let type = this.types.get(id);
    if (type === undefined) {
      const res = await fetch(`${this.registryUrl}/schemas/ids/${id}`);
      if (!res.ok) throw new Error(`registry answered ${res.status} for schema id ${id}`);
      const { schema } = (await res.json()) as { schema: string };
      type = avro.Type.forSchema(JSON.parse(schema));
      this.types.set(id, type);
    }
    return { schemaId: id, value: type.fromBuffer(buf.subarray(5)) as Record<string, unknown> };
  }
}

/** Reads committed events of a topic until `done(events)` holds or the deadline passes. */
export async function readTopic(
  brokers: string[],
  registryUrl: string,
  topic: string,
  done: (events: TopicEvent[]) => boolean,
  timeoutMs = 60_000,
): Promise<TopicEvent[]> {
  const consumer = kafka(brokers).consumer({
    groupId: uniqueName('reader'),
    readUncommitted: false,
    maxWaitTimeInMs: 100,
  });
  const decoder = new PlainDecoder(registryUrl);
  const events: TopicEvent[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`topic ${topic}: condition not met after ${timeoutMs} ms with ${events.length} events`),
          ),
        timeoutMs,
      );
      const check = () => {
        if (done(events)) {
          clearTimeout(timer);
          resolve();
        }
      };
      check();
      consumer
        .run({
          eachMessage: async ({ partition, message }: { partition: number; message: KafkaMessage }) => {
            const { schemaId, value } = await decoder.decode(message.value!);
            const headers: Record<string, string> = {};
            for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
            events.push({
              offset: message.offset,
              partition,
              key: message.key!.toString(),
              headers,
              schemaId,
              value,
            });
            check();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return events;
}

/** Table events only (no heartbeats/messages), as "op table key" strings for compact assertions. */
export function positions(events: TopicEvent[]): string[] {
  return events.map((e) => `${e.headers['brabant.commit-lsn']}#${e.headers['brabant.index']}`);
}

export function assertNoDuplicates(events: TopicEvent[]): void {
  const seen = new Set<string>();
  for (const p of positions(events)) {
    if (seen.has(p)) throw new Error(`event at position ${p} appears twice in the topic`);
    seen.add(p);
  }
}

/**
 * A row image of an event as plain values: a field whose union has several non-null branches
 * arrives from a plain Avro decoder as `{ branch: value }`; this takes the value.
 */
export function plainRow(e: TopicEvent, side: 'before' | 'after'): Record<string, unknown> | null {
  const r = e.value[side] as Record<string, unknown> | null;
  if (r === null) return null;
  return Object.fromEntries(
    Object.entries(r).map(([k, v]) => [
      k,
      v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && !Array.isArray(v)
        ? Object.values(v)[0]
        : v,
    ]),
  );
}
