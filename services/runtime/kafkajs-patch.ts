/**
 * Fixes to kafkajs 2.2.4, applied before kafkajs loads (import this module before `kafkajs`).
 *
 * Its producer groups a send's messages per partition with a reduce that copies the partition's
 * array for every message: quadratic in the size of a send. Capture sends up to thousands of
 * messages per request, and the profile of W5 showed that grouping among its hottest functions.
 * This puts a linear function with the same contract (same inputs, same output: partition →
 * messages in order) in the module cache under the internal module's path, so kafkajs's
 * `require` of it gets this one.
 *
 * Its Produce request encoder builds every record, header and varint as a buffer of its own and
 * copies each record four times: the request of an uncompressed send without record timestamps
 * (all of Brabant's) is written in one buffer instead (kafka-request-encoding.ts, the same bytes);
 * any other request goes to kafkajs's encoder as before. And every request's framing (size and
 * header) is written once in a buffer of its size, where kafkajs copied the request twice into
 * zero-filled buffers of the next power of two.
 *
 * Its record decoder computes each fetched record's offset and timestamp in BigInt objects and
 * copies the headers object once per header: kafka-record-decoding.ts returns the same fields
 * with plain numbers where they fit.
 *
 * If kafkajs was already loaded, or its layout or version differs, nothing is changed and
 * `kafkajsPatched` / `produceEncoderPatched` say so.
 */
import { createRequire, Module } from 'node:module';
import { decodeRecord } from './kafka-record-decoding.ts';
import {
  encodable,
  encodeProduceRequest,
  frameRequest,
  type ProduceRequest,
} from './kafka-request-encoding.ts';

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;

export function groupMessagesPerPartition({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: Partitioner;
}): Record<number, unknown[]> {
  if (partitionMetadata.length === 0) return {};
  const result: Record<number, unknown[]> = {};
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const list = result[partition];
    if (list === undefined) result[partition] = [message];
    else list.push(message);
  }
  return result;
}

/** The kafkajs these fixes were written against and tested with. */
const KAFKAJS_VERSION = '2.2.4';

function install(): boolean {
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
    if (require.resolve('kafkajs') in require.cache) return false; // too late: kafkajs is loaded
    if ((require('kafkajs/package.json') as { version: string }).version !== KAFKAJS_VERSION) return false;
  } catch {
    return false;
  }
  const framing = require.resolve('kafkajs/src/protocol/request.js');
  const existing = require.cache[path];
  if (existing !== undefined) return existing.exports === groupMessagesPerPartition;
  inject(path, groupMessagesPerPartition);
  inject(require.resolve('kafkajs/src/protocol/recordBatch/record/v0/decoder.js'), decodeRecord);
  const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: object };
  inject(framing, async (o: FramingArgs) => {
    const payload = (await o.request.encode()) as { buffer: Buffer };
    return encoderOver(
      Encoder,
      frameRequest(
        { ...o.request, correlationId: o.correlationId, clientId: o.clientId ?? null },
        payload.buffer,
      ),
    );
  });
  return true;
}

/** What kafkajs's connection passes to its request framing (protocol/request.js). */
interface FramingArgs {
  correlationId: number;
  clientId?: string | null;
  request: { apiKey: number; apiVersion: number; encode: () => Promise<unknown> };
}

/** A kafkajs Encoder holding these bytes: kafkajs reads one through `buf`, `offset`, `buffer` and `size()`. */
function encoderOver(Encoder: { prototype: object }, buf: Buffer): unknown {
  return Object.assign(Object.create(Encoder.prototype), { buf, offset: buf.length });
}

/** Puts `exports` in the module cache under kafkajs's internal module `path`: its `require` gets them. */
function inject(path: string, exports: unknown): void {
  const m = new Module(path);
  m.filename = path;
  m.loaded = true;
  m.exports = exports;
  createRequire(import.meta.url).cache[path] = m;
}

export const kafkajsPatched = install();

/** kafkajs's Produce v3 request (v4–v7 wrap it), as its producer calls it. */
type ProduceRequestFactory = (args: {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: { toString(): string };
  producerEpoch?: number;
  compression?: number;
  topicData: ProduceRequest['topicData'];
}) => { encode: () => Promise<unknown> };

function installProduceEncoder(): boolean {
  const require = createRequire(import.meta.url);
  const base = 'kafkajs/src/protocol/requests/produce';
  try {
    if ((require('kafkajs/package.json') as { version: string }).version !== KAFKAJS_VERSION) return false;
    // v4–v7 hold v3's function from their first load: too late once any of them is loaded
    for (const v of [4, 5, 6, 7])
      if (require.resolve(`${base}/v${v}/request.js`) in require.cache) return false;
    const path = require.resolve(`${base}/v3/request.js`);
    const original = require(path) as ProduceRequestFactory;
    const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: object };
    const crc32c = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
    const patched: ProduceRequestFactory = (args) => {
      const request = original(args);
      if (!encodable(args.compression ?? 0, args.topicData)) return request;
      return {
        ...request,
        encode: async () => {
          const buf = encodeProduceRequest(
            {
              transactionalId: args.transactionalId ?? null,
              acks: args.acks,
              timeout: args.timeout,
              producerId: BigInt(args.producerId?.toString() ?? '-1'),
              producerEpoch: args.producerEpoch ?? 0,
              transactional: !!args.transactionalId,
              now: Date.now(),
              topicData: args.topicData,
            },
            crc32c,
          );
          return encoderOver(Encoder, buf);
        },
      };
    };
    require.cache[path]!.exports = patched;
    return true;
  } catch {
    return false;
  }
}

export const produceEncoderPatched = installProduceEncoder();
