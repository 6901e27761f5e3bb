/**
 * `brabant node join` into a live two-region cluster: both regions keep writing conflicting
 * upserts and deletes on the same keys the whole time, a third node (empty, on a PostgreSQL
 * server of its own) joins from the Vlaanderen node, and afterwards all three hold the same rows,
 * each row with the same last-writer-wins version (commit time and node) everywhere — the copied
 * rows kept the version they had on the peer — and the tombstones of keys deleted before the
 * join with their versions too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import { type Cluster, nodeServers, replicationCluster, server } from './support/cluster.ts';
import { versionedRows, writeLoad } from './support/load.ts';
import { waitConverged } from './support/pair.ts';
import { node } from './support/stack.ts';

const SCHEMA =
  'create table kv (id int primary key, val text); create table bulk (id int primary key, note text)';

let servers: Stack;
let cluster: Cluster | undefined;

beforeAll(async () => {
  servers = await nodeServers('join', [{ name: 'vlaanderen', nodes: 1 }]);
});
afterAll(async () => {
  await cluster?.cleanup();
  await servers?.stop();
});

describe('brabant node join', { timeout: 300_000 }, () => {
  it('joins a node into a live two-region cluster under conflicting writes; all three end identical, versions included', async () => {
    cluster = await replicationCluster(SCHEMA, [node('vl-1'), node('wa-1')]);
    const [vl, wa] = cluster.members as [
      NonNullable<Cluster['members'][0]>,
      NonNullable<Cluster['members'][0]>,
    ];
    await cluster.startServices(vl);
    await cluster.startServices(wa);
    // history before the join: rows in bulk transactions and one-row transactions, from both
    await vl.client.query(`insert into bulk select g, 'from vl' from generate_series(1, 3100) g`);
    for (let i = 0; i < 200; i++)
      await wa.client.query('insert into kv values ($1, $2) on conflict (id) do nothing', [i + 1, `wa:${i}`]);
    await vl.client.query('delete from bulk where id > 3000');
    await waitConverged([vl, wa], 'bulk', (r) => r.length === 3000);

    const loads = [writeLoad(vl, { keys: 300, pauseMs: 2 }), writeLoad(wa, { keys: 300, pauseMs: 2 })];
    const joining = await cluster.add(server(servers, 'vl-1'), { empty: true, region: 'vlaanderen' });
    const join = cluster.spawnCli(['node', 'join', joining.id, '--from', vl.id, '--timeout', '120']);
    await join.waitFor(/start capture and apply of/, 180_000);
    const out = join.output();
    expect(out).toMatch(/snapshot of .* at \d+\/[0-9A-F]+/);
    expect(out).toMatch(/copy: tables \d+\/\d+, rows [\d,]+ of ~[\d,]+.*rows\/s/);
    await cluster.startServices(joining);
    const result = await join.done;
    console.log(result.out);
    expect(result.code, result.out).toBe(0);
    expect(result.out).toMatch(/caught up with/);
    // the joined node writes too before the end
    const third = writeLoad(joining, { keys: 300, pauseMs: 2 });
    await new Promise((r) => setTimeout(r, 3000));
    const counts = await Promise.all([...loads, third].map((l) => l.stop()));
    console.log(`writes per node: ${counts.map((c) => c.writes).join(', ')}`);
    expect(counts.every((c) => c.failures === 0)).toBe(true);

    const all = cluster.members;
    await waitConverged(all, 'kv', () => true, 90_000);
    await waitConverged(all, 'bulk', (r) => r.length === 3000, 30_000);
    // the same version of every row everywhere: copied rows kept the peer's (time and node)
    for (const table of ['kv', 'bulk']) {
      const versions = await Promise.all(all.map((m) => versionedRows(m, table)));
      expect(versions[2]).toEqual(versions[0]);
      expect(versions[1]).toEqual(versions[0]);
    }
    const bulkNodes = new Set((await versionedRows(joining, 'bulk')).map((l) => l.split('|')[3]));
    expect([...bulkNodes]).toEqual([vl.id]);
    // tombstones travel with their versions: keys deleted before the join are deleted on the
    // joined node at the same time, by the same node
    const gone = await Promise.all(
      [vl, joining].map(async (m) =>
        (
          await m.client.query<{ k: string }>(
            `select t.key::text || '|' || (extract(epoch from v.timestamp) * 1000000)::int8 || '|' ||
                    coalesce(substr(o.roname, 9), $1) as k
               from brabant.tombstones t left join lateral pg_xact_commit_timestamp_origin(t.xmin) v on true
               left join pg_replication_origin o on o.roident = v.roident
              where t.tbl = 'public.bulk' order by 1`,
            [m.id],
          )
        ).rows.map((r) => r.k),
      ),
    );
    expect(gone[0]).toHaveLength(100);
    expect(gone[1]).toEqual(gone[0]);
  });
});
