import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { decodeRecord } from './kafka-record-decoding.ts';
import { groupMessagesPerPartition, kafkajsPatched } from './kafkajs-patch.ts';

const require = createRequire(import.meta.url);

describe('kafkajs patch', () => {
  it('is what kafkajs loads for grouping messages per partition', async () => {
    expect(kafkajsPatched).toBe(true);
    await import('kafkajs');
    expect(require('kafkajs/src/producer/groupMessagesPerPartition.js')).toBe(groupMessagesPerPartition);
    expect(require('kafkajs/src/protocol/recordBatch/record/v0/decoder.js')).toBe(decodeRecord);
  });

  it('groups like the original: every message once, in order, under its partition', () => {
    const messages = Array.from({ length: 10_000 }, (_, i) => ({ key: `k${i % 7}`, value: String(i) }));
    const partitioner = ({ message }: { message: unknown }) =>
      Number((message as { key: string }).key.slice(1)) % 3;
    const grouped = groupMessagesPerPartition({ topic: 't', partitionMetadata: [{}], messages, partitioner });
    expect(Object.keys(grouped).sort()).toEqual(['0', '1', '2']);
    for (const [p, list] of Object.entries(grouped)) {
      expect(list).toEqual(messages.filter((m) => partitioner({ message: m }) === Number(p)));
    }
    expect(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages, partitioner })).toEqual(
      {},
    );
  });
});
