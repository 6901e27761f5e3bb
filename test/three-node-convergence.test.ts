/**
 * The convergence proof on three nodes: random inserts, updates and deletes on a small key space
 * from all three at once (conflicts on every key), while capture and apply of the nodes are
 * killed with kill -9 at random moments and started again. Every committed write is recorded
 * with its commit time and node; afterwards the three hold the same rows, each key's row is the
 * write with the greatest (commit time, node id), deletes included, and every row has the same
 * version (commit time and node) on every node. Two topologies: two nodes in one region and one
 * in the other (vl-1, vl-2, wa-1), and three regions (vl-1, wa-1, br-1).
 *
 * Size: BRABANT_CONVERGENCE_OPS (per node, default 200 here), BRABANT_CONVERGENCE_KEYS (default
 * 20); BRABANT_CONVERGENCE_SEED replays a run (seeds are printed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeInfo, Stack } from '../infra/stack.ts';
import { type Cluster, type Member, nodeServers, replicationCluster } from './support/cluster.ts';
import { drive, expected, rng, type Write } from './support/convergence.ts';
import { versionedRows } from './support/load.ts';
import { tableRows, waitConverged } from './support/pair.ts';
import type { ServiceProcess } from './support/services.ts';
import { node } from './support/stack.ts';

const OPS = Number(process.env.BRABANT_CONVERGENCE_OPS ?? 200);
const SCHEMA = 'create table kv (id int primary key, val text)';
const CAPTURE_ENV = { BRABANT_CAPTURE_BATCH_EVENTS: '50' };

let servers: Stack;
let cluster: Cluster | undefined;

function serverIn(region: string): NodeInfo {
  const r = servers.regions.find((x) => x.name === region);
  if (r === undefined || r.nodes[0] === undefined) throw new Error(`no server in ${region}`);
  return r.nodes[0];
}

beforeAll(async () => {
  servers = await nodeServers('three', [
    { name: 'vlaanderen', nodes: 1 },
    { name: 'brussel', nodes: 1 },
  ]);
});
afterAll(async () => {
  await cluster?.cleanup();
  await servers?.stop();
});

/** Writes on all members while services are killed and restarted; returns every committed write. */
async function writeUnderKills(c: Cluster, seed: number): Promise<Write[]> {
  const procs = new Map<string, ServiceProcess>();
  for (const m of c.members) {
    const s = await c.startServices(m, { capture: CAPTURE_ENV });
    procs.set(`capture:${m.id}`, s.capture);
    procs.set(`apply:${m.id}`, s.apply);
  }
  const random = rng(seed);
  const streams = c.members.map(() => rng(Math.floor(random() * 1e9)));
  let writing = true;
  const driving = Promise.all(c.members.map((m, i) => drive(m, OPS, streams[i]!, 5))).finally(() => {
    writing = false;
  });
  let kills = 0;
  while (writing || kills < 4) {
    await new Promise((r) => setTimeout(r, 200 + random() * 600));
    const names = [...procs.keys()];
    const victim = names[Math.floor(random() * names.length)]!;
    await procs.get(victim)!.kill('SIGKILL');
    kills++;
    const [kind, id] = victim.split(':') as ['capture' | 'apply', string];
    const m = c.members.find((x) => x.id === id)!;
    procs.set(victim, kind === 'capture' ? c.capture(m, CAPTURE_ENV) : c.apply(m));
  }
  const writes = (await driving).flat();
  console.log(
    `seed ${seed}: ${writes.length} writes on ${c.members.length} nodes, ${kills} processes killed`,
  );
  return writes;
}

async function checkConverged(members: Member[], writes: Write[], seed: number): Promise<void> {
  const want = expected(writes);
  try {
    await waitConverged(members, 'kv', (r) => JSON.stringify(r) === JSON.stringify(want), 120_000);
  } catch (err) {
    const got = await Promise.all(members.map((m) => tableRows(m.client, 'kv')));
    throw new Error(
      `seed ${seed}: ${(err as Error).message}\nexpected ${want.join(' ')}\ngot ${got.map((g) => g.join(' ')).join('\n    ')}`,
    );
  }
  // the same version of every row on every node: commit time and the node that wrote it
  const versions = await Promise.all(members.map((m) => versionedRows(m, 'kv')));
  expect(versions[0]).toHaveLength(want.length);
  for (const v of versions.slice(1)) expect(v).toEqual(versions[0]);
  const winners = new Set(versions[0]!.map((l) => l.split('|')[3]));
  console.log(`converged to ${want.length} rows, last written by ${[...winners].sort().join(', ')}`);
}

describe('three-node convergence', { timeout: 300_000 + OPS * 600 }, () => {
  it('two nodes in one region and one in the other converge under conflicting writes and kill -9', async () => {
    const seed = Number(process.env.BRABANT_CONVERGENCE_SEED ?? Date.now() % 1_000_000);
    console.log(`three-node convergence seed ${seed} (BRABANT_CONVERGENCE_SEED=${seed} replays it)`);
    cluster = await replicationCluster(SCHEMA, [node('vl-1'), serverIn('vlaanderen'), node('wa-1')]);
    expect(new Set(cluster.members.map((m) => m.region)).size).toBe(2);
    const writes = await writeUnderKills(cluster, seed);
    await checkConverged(cluster.members, writes, seed);
    await cluster.cleanup();
    cluster = undefined;
  });

  it('three regions converge under conflicting writes and kill -9', async () => {
    const seed = Number(process.env.BRABANT_CONVERGENCE_SEED ?? (Date.now() + 1) % 1_000_000);
    console.log(`three-region convergence seed ${seed}`);
    cluster = await replicationCluster(SCHEMA, [node('vl-1'), node('wa-1'), serverIn('brussel')], {
      extraRegions: ['brussel'],
    });
    expect(new Set(cluster.members.map((m) => m.region)).size).toBe(3);
    const writes = await writeUnderKills(cluster, seed);
    await checkConverged(cluster.members, writes, seed);
  });
});
