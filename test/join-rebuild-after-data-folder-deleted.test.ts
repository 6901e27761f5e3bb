/**
 * A node whose data folder is lost is rebuilt by a join from a peer, under its own id
 * (`--rebuild`; without it the id is refused as in use). Its last changes were in Kafka but not
 * yet applied by the peer it is rebuilt from (that peer's apply was stopped): they come back to it
 * from Kafka with their original version, the peer gets them when its apply returns, and what the
 * rebuilt node writes afterwards reaches everyone (its new WAL was moved past its old positions).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import { type Cluster, type Member, nodeServers, replicationCluster, server } from './support/cluster.ts';
import { replaceDataFolder } from './support/data-folder.ts';
import { versionedRows } from './support/load.ts';
import { waitConverged } from './support/pair.ts';
import { node } from './support/stack.ts';

const SCHEMA = 'create table kv (id int primary key, val text)';

let servers: Stack;
let cluster: Cluster;

beforeAll(async () => {
  servers = await nodeServers('rebuild', [{ name: 'wallonie', nodes: 1 }]);
});
afterAll(async () => {
  await cluster?.cleanup();
  await servers?.stop();
});

describe('rebuild of a node whose data folder was deleted', { timeout: 240_000 }, () => {
  it('joins again under its id; its changes the peer had not applied come back from Kafka', async () => {
    cluster = await replicationCluster(SCHEMA, [node('vl-1'), node('wa-1'), server(servers, 'wa-1')]);
    const [p, q, x] = cluster.members as [Member, Member, Member];
    const procs = new Map<string, Awaited<ReturnType<Cluster['startServices']>>>();
    for (const m of [p, q, x]) procs.set(m.id, await cluster.startServices(m));
    for (const m of [p, q, x])
      await m.client.query(`insert into kv select g, $1 from generate_series($2::int, $2::int + 99) g`, [
        m.id,
        1000 * (m.place + 1),
      ]);
    await waitConverged([p, q, x], 'kv', (r) => r.length === 300);

    // p stops applying; x's last changes reach Kafka and q, not p
    await procs.get(p.id)!.apply.stop();
    await x.client.query(`insert into kv select g, 'x before the loss' from generate_series(9001, 9050) g`);
    await x.client.query(`update kv set val = 'x updated before the loss' where id = 1001`);
    await waitConverged([q, x], 'kv', (r) => r.filter((l) => l.includes('before the loss')).length === 51);
    const before = await versionedRows(q, 'kv');

    // x's data folder is lost: its server comes back empty (a new initdb)
    await procs.get(x.id)!.capture.kill('SIGKILL');
    await procs.get(x.id)!.apply.kill('SIGKILL');
    await replaceDataFolder(servers, 'wa-1', undefined);
    await cluster.remove(x).catch(() => {});
    const rebuilt = await cluster.add(server(servers, 'wa-1'), { empty: true, id: x.id });

    const refused = await cluster.cli(['node', 'join', x.id, '--from', p.id]);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/NODE_ID_IN_USE: node id \S+ is in use: a peer applies its changes/);

    const join = cluster.spawnCli(['node', 'join', x.id, '--from', p.id, '--rebuild', '--timeout', '120']);
    await join.waitFor(/start capture and apply of/);
    expect(join.output()).toMatch(/its own changes up to \S+ come back from Kafka/);
    await cluster.startServices(rebuilt);
    const r = await join.done;
    console.log(r.out);
    expect(r.code, r.out).toBe(0);
    // its changes p never applied are back on it, with the version they had
    await waitConverged([q, rebuilt], 'kv', (rows) => rows.length === 350, 60_000);
    expect(await versionedRows(rebuilt, 'kv')).toEqual(before);

    // p's apply returns and gets them too; the rebuilt node's new writes reach everyone
    cluster.apply(p);
    await rebuilt.client.query(`insert into kv values (9999, 'x after the rebuild')`);
    await waitConverged([p, q, rebuilt], 'kv', (rows) => rows.length === 351, 60_000);
    const all = await Promise.all([p, q, rebuilt].map((m) => versionedRows(m, 'kv')));
    expect(all[1]).toEqual(all[0]);
    expect(all[2]).toEqual(all[0]);
  });
});
