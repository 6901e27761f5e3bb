/**
 * One fix to kafkajs 2.2.4, applied before kafkajs loads (import this module before `kafkajs`).
 *
 * Its producer groups a send's messages per partition with a reduce that copies the partition's
 * array for every message: quadratic in the size of a send. Capture sends up to thousands of
 * messages per request, and the profile of W5 showed that grouping among its hottest functions.
 * This puts a linear function with the same contract (same inputs, same output: partition →
 * messages in order) in the module cache under the internal module's path, so kafkajs's
 * `require` of it gets this one. If kafkajs was already loaded, or its layout differs (another
 * version), nothing is changed and `kafkajsPatched` says so.
 */
import { createRequire, Module } from 'node:module';

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

function install(): boolean {
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
    if (require.resolve('kafkajs') in require.cache) return false; // too late: kafkajs is loaded
  } catch {
    return false;
  }
  const existing = require.cache[path];
  if (existing !== undefined) return existing.exports === groupMessagesPerPartition;
  const m = new Module(path);
  m.filename = path;
  m.loaded = true;
  m.exports = groupMessagesPerPartition;
  require.cache[path] = m;
  return true;
}

export const kafkajsPatched = install();
