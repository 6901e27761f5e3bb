/**
 * `brabant node part`: a node leaves while the others keep going. Refused while its region's
 * router points at it (with the switchover to run; for a region's last node, the join to run
 * first), while its services run, and while it holds a change not yet in Kafka. Once parted, the
 * others have applied all of it, no longer wait for it to prune tombstones, have dropped its
 * origin; its consumer group and slot are gone, the router no longer lists it, and its services
 * refuse to start.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import {
  type Cluster,
  type ClusterRouter,
  type Member,
  nodeServers,
  replicationCluster,
  server,
} from './support/cluster.ts';
import { waitConverged } from './support/pair.ts';
import { kafka, node, stack } from './support/stack.ts';

const SCHEMA = 'create table kv (id int primary key, val text)';
const FAST_PRUNE = { BRABANT_APPLY_PRUNE_INTERVAL_MS: '300', BRABANT_APPLY_TOMBSTONE_MARGIN_MS: '0' };

let servers: Stack;
let cluster: Cluster;
let a: Member; // vlaanderen, its router's leader
let b: Member; // wallonie, the region's only node
let c: Member; // vlaanderen, the one that parts
let routers: { vl: ClusterRouter; wa: ClusterRouter };
const services = new Map<string, Awaited<ReturnType<Cluster['startServices']>>>();

const tombstones = async (m: Member, key: number) =>
  (
    await m.client.query(`select 1 from brabant.tombstones where key = jsonb_build_object('id', $1::int)`, [
      key,
    ])
  ).rowCount;

beforeAll(async () => {
  servers = await nodeServers('part', [{ name: 'vlaanderen', nodes: 1 }]);
  cluster = await replicationCluster(SCHEMA, [node('vl-1'), node('wa-1'), server(servers, 'vl-1')]);
  [a, b, c] = cluster.members as [Member, Member, Member];
  for (const m of [a, b, c]) services.set(m.id, await cluster.startServices(m, { apply: FAST_PRUNE }));
  routers = { vl: await cluster.router('vlaanderen'), wa: await cluster.router('wallonie') };
});
afterAll(async () => {
  await cluster?.cleanup();
  await servers?.stop();
});

describe('brabant node part', { timeout: 240_000 }, () => {
  it('refuses to part the node its router points at, and the last node of a region, with the fix', async () => {
    const leader = await cluster.cli(['node', 'part', a.id]);
    expect(leader.code).not.toBe(0);
    expect(leader.out).toMatch(
      new RegExp(
        `NODE_IS_LEADER: the router of \\S+ points at ${a.id}: move its writes first \\(brabant switchover --region \\S+ --to ${c.id}\\)`,
      ),
    );
    const last = await cluster.cli(['node', 'part', b.id]);
    expect(last.code).not.toBe(0);
    expect(last.out).toMatch(
      /NODE_IS_LEADER: .* it is the last node of \S+: join another node into \S+ first \(brabant node join NEW --from \S+\), switch the router over to it, then part/,
    );
  });

  it('refuses while its services run or a change of it is not in Kafka, then parts it; the others go on without it', async () => {
    for (const m of [a, b, c]) await m.client.query('insert into kv values ($1, $2)', [100 + m.place, m.id]);
    await waitConverged([a, b, c], 'kv', (r) => r.length === 3);
    const running = await cluster.cli(['node', 'part', c.id]);
    expect(running.out).toMatch(/NODE_STILL_RUNNING: \S+'s capture or apply is running: stop them first/);

    const own = services.get(c.id)!;
    await own.capture.stop();
    await own.apply.stop();
    await c.client.query(`insert into kv values (200, 'after capture stopped')`);
    const unsent = await cluster.cli(['node', 'part', c.id]);
    expect(unsent.code).not.toBe(0);
    expect(unsent.out).toMatch(
      /NODE_STILL_RUNNING: \S+ committed 1 transaction\(s\) its capture has not put in Kafka yet/,
    );
    // its capture sends it, and stops again
    const capture = cluster.capture(c);
    await waitConverged([a, b, c], 'kv', (r) => r.length === 4);
    await capture.stop();

    // tombstone pruning on b waits for every peer: c is silent now, so a tombstone stays
    await a.client.query('delete from kv where id = 100');
    await a.client.query(`insert into kv values (300, 'newer than the delete')`);
    await waitConverged([a, b], 'kv', (r) => r.length === 4);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await tombstones(b, 100)).toBe(1);

    const parted = await cluster.cli(['node', 'part', c.id, '--timeout', '60']);
    console.log(parted.out);
    expect(parted.code, parted.out).toBe(0);
    expect(parted.out).toMatch(/applied all of/);
    for (const m of [a, b]) {
      const r = await m.client.query('select node from brabant.parted_nodes');
      expect(r.rows.map((x) => x.node)).toEqual([c.id]);
      expect((await m.client.query('select 1 from brabant.peers where node = $1', [c.id])).rowCount).toBe(0);
      await expect
        .poll(
          async () =>
            (
              await m.client.query(`select 1 from pg_replication_origin where roname = 'brabant_' || $1`, [
                c.id,
              ])
            ).rowCount,
          { timeout: 15_000 },
        )
        .toBe(0);
    }
    // no longer waited for: b prunes the tombstone once a has sent something newer
    await a.client.query(`insert into kv values (301, 'after the part')`);
    await expect.poll(() => tombstones(b, 100), { timeout: 15_000 }).toBe(0);
    expect(
      (await c.client.query('select 1 from pg_replication_slots where slot_name = $1', [`brabant_${c.id}`]))
        .rowCount,
    ).toBe(0);
    const admin = kafka(stack().regions[0]!.kafkaBrokers).admin();
    await admin.connect();
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId);
    await admin.disconnect();
    expect(groups).not.toContain(`brabant-apply-${c.id}`);
    const status = (await (await fetch(`${routers.vl.control}/status`)).json()) as {
      nodes: { id: string }[];
    };
    expect(status.nodes.map((n) => n.id)).not.toContain(c.id);

    // its services refuse to start; the others replicate on
    const again = cluster.capture(c);
    expect(await again.exited).not.toBe(0);
    expect(again.lines.join('\n')).toMatch(/NODE_PARTED: node \S+ left the cluster/);
    await b.client.query(`update kv set val = 'still replicating' where id = 300`);
    await waitConverged([a, b], 'kv', (r) => r.some((x) => x.includes('still replicating')));
  });
});
