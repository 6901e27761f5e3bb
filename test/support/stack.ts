/** Per-test isolation on the shared stack: each test gets its own databases and topics. */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { inject } from 'vitest';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import type { NodeInfo, RegionInfo, StackInfo } from '../../infra/stack.ts';

export function stack(): StackInfo {
  return inject('stack');
}

export function region(name: string): RegionInfo {
  return regionOf(stack(), name);
}

export function regionOf(on: StackInfo, name: string): RegionInfo {
  const r = on.regions.find((x) => x.name === name);
  if (r === undefined) throw new Error(`test stack has no region ${name}`);
  return r;
}

export function node(id: string, on: StackInfo = stack()): NodeInfo {
  for (const r of on.regions) for (const n of r.nodes) if (n.id === id) return n;
  throw new Error(`test stack has no node ${id}`);
}

/** A name unique to this test: letters, digits and _ only, so it is a valid database or topic name. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** Creates a fresh database on a node (a unique name, or `name`) and returns its URL; drop it with the returned function. */
export async function createDatabase(
  n: NodeInfo,
  prefix = 't',
  name = uniqueName(prefix),
): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const admin = new pg.Client({ connectionString: n.url });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: withDatabase(n.url, name),
    drop: async () => {
      const c = new pg.Client({ connectionString: n.url });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

export function kafka(brokers: string[], clientId = uniqueName('test')): Kafka {
  return new Kafka({ clientId, brokers, logLevel: logLevel.NOTHING });
}
