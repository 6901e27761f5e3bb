/**
 * `brabant node join` refusing what it must not do, and recovering from what goes wrong: a node
 * that is not empty, a node id already in use, the peer becoming unreachable in the middle of
 * the copy (undone at once; the next run joins), and the join killed in the middle of the copy
 * (nothing left holding WAL on the peer; the next run undoes the partial copy and begins again;
 * --undo leaves the node empty).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import { startPart, stopPart } from '../infra/stack-control.ts';
import { readState } from '../infra/stack-state.ts';
import { type Cluster, type Member, nodeServers, replicationCluster, server } from './support/cluster.ts';
import { tableRows } from './support/pair.ts';

const ROWS = 400_000;
const SCHEMA =
  'create table big (id int primary key, payload text); create table kv (id int primary key, val text)';

let servers: Stack;
let cluster: Cluster;
let peer: Member;

async function isEmpty(m: Member): Promise<boolean> {
  const r = await m.client.query(
    `select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%' limit 1`,
  );
  return r.rowCount === 0;
}

async function joinSlotsOnPeer(): Promise<number> {
  const r = await peer.client.query(
    `select 1 from pg_replication_slots where slot_name like 'brabant_join_%'`,
  );
  return r.rowCount ?? 0;
}

beforeAll(async () => {
  servers = await nodeServers('join-bad', [{ name: 'vlaanderen', nodes: 3 }]);
  cluster = await replicationCluster(SCHEMA, [server(servers, 'vl-1')]);
  peer = cluster.members[0]!;
  // an existing database as the first node: its rows are not in Kafka
  await peer.client.query(`insert into big select g, repeat('x', 100) from generate_series(1, ${ROWS}) g`);
  await peer.client.query(`insert into kv select g, 'v' || g from generate_series(1, 1000) g`);
  await cluster.startServices(peer);
});
afterAll(async () => {
  await cluster?.cleanup();
  await servers?.stop();
});

describe('brabant node join: bad input', { timeout: 300_000 }, () => {
  it('refuses a node that is not empty, naming what it holds, and changes nothing', async () => {
    const n = await cluster.add(server(servers, 'vl-2'), { empty: true });
    await n.client.query('create table leftover (id int)');
    const r = await cluster.cli(['node', 'join', n.id, '--from', peer.id]);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/NODE_NOT_EMPTY: node \S+ is not empty \(table public\.leftover\)/);
    const left = await n.client.query(
      `select to_regclass('brabant.join_state') as s, to_regclass('leftover') as t`,
    );
    expect(left.rows[0]).toEqual({ s: null, t: 'leftover' });
    await cluster.remove(n);
  });

  it('refuses a node id in use by a member (the peer applies it), unless --rebuild', async () => {
    const m = await cluster.add(server(servers, 'vl-3'), { empty: true });
    // a member under that id: the peer applied changes of it (an origin with progress; one that
    // node init made for every node of the topology, without progress, is no use of the id)
    await peer.client.query(`select pg_replication_origin_create('brabant_' || $1)`, [m.id]);
    await peer.client.query(`select pg_replication_origin_advance('brabant_' || $1, '0/1')`, [m.id]);
    try {
      const r = await cluster.cli(['node', 'join', m.id, '--from', peer.id]);
      expect(r.code).not.toBe(0);
      expect(r.out).toMatch(
        /NODE_ID_IN_USE: node id \S+ is in use: a peer applies its changes.*add --rebuild/,
      );
      expect(await isEmpty(m)).toBe(true);
    } finally {
      await peer.client.query(`select pg_replication_origin_drop('brabant_' || $1)`, [m.id]);
      await cluster.remove(m);
    }
  });

  it('undoes the copy at once when the peer becomes unreachable in the middle of it', async () => {
    const n = await cluster.add(server(servers, 'vl-2'), { empty: true, id: `${cluster.members[0]!.id}_u` });
    const join = cluster.spawnCli(['node', 'join', n.id, '--from', peer.id, '--timeout', '120']);
    await join.waitFor(/copy: tables .* rows [1-9]/);
    // the peer's server goes away at once (immediate shutdown: as if its machine failed)
    const pid = readState(servers.workDir)!.pids.find((p) => p.id === 'vl-1')!.pid;
    process.kill(pid, 'SIGQUIT');
    await stopPart(servers.workDir, 'vl-1');
    const r = await join.done;
    console.log(r.out);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(
      /JOIN_FAILED: the join of \S+ from \S+ failed during the copy .*nothing of it is kept/,
    );
    expect(r.out).toMatch(/undoing what it copied/);
    expect(await isEmpty(n)).toBe(true);
    await startPart(servers.workDir, 'vl-1');
    await peer.client.end().catch(() => {});
    peer.client = new (await import('pg')).default.Client({ connectionString: peer.url });
    await peer.client.connect();
    await cluster.remove(n);
  });

  it('after a join killed in the middle of the copy: nothing holds WAL on the peer, --undo empties the node, a new run joins', async () => {
    const n = await cluster.add(server(servers, 'vl-3'), { empty: true, id: `${peer.id}_k` });
    const killed = cluster.spawnCli(['node', 'join', n.id, '--from', peer.id]);
    await killed.waitFor(/copy: tables .* rows [1-9]/);
    killed.kill('SIGKILL');
    await killed.done;
    // the snapshot's slot was temporary: gone with the command's connection
    await expect.poll(joinSlotsOnPeer, { timeout: 10_000 }).toBe(0);
    expect(await isEmpty(n)).toBe(false);
    const undo = await cluster.cli(['node', 'join', n.id, '--undo']);
    expect(undo.code, undo.out).toBe(0);
    expect(await isEmpty(n)).toBe(true);

    // killed again, then simply run again: the partial copy is undone and it begins anew
    const again = cluster.spawnCli(['node', 'join', n.id, '--from', peer.id]);
    await again.waitFor(/copy: tables .* rows [1-9]/);
    again.kill('SIGKILL');
    await again.done;
    const join = cluster.spawnCli(['node', 'join', n.id, '--from', peer.id, '--timeout', '120']);
    await join.waitFor(/start capture and apply of/);
    expect(join.output()).toMatch(/stopped during the copy, after [\d,]+ rows: .*undone and begins again/);
    await cluster.startServices(n);
    const r = await join.done;
    console.log(r.out);
    expect(r.code, r.out).toBe(0);
    await peer.client.query(`update kv set val = 'after' where id = 1`);
    await expect
      .poll(async () => (await tableRows(n.client, 'kv')).find((x) => x.includes('"id":1,')), {
        timeout: 30_000,
      })
      .toContain('after');
    expect((await n.client.query('select count(*)::int as c from big')).rows[0].c).toBe(ROWS);
  });
});
