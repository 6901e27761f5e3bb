/**
 * `brabant node join` on the secured stack (TLS and authentication on every link, the default of
 * `brabant up`): a two-region cluster whose services log in as their own roles and Kafka users
 * (set up by `brabant node init`) writes conflicting upserts and deletes in both regions; a third
 * node joins from the Vlaanderen node, the command run as the operator (the superuser's password
 * in PGPASSWORD, Kafka as the topology's admin user over TLS); the new node is set up by node init
 * once copied and its services start on their roles. All three end identical, versions included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Member } from './support/cluster.ts';
import { versionedRows, writeLoad } from './support/load.ts';
import { waitConverged } from './support/pair.ts';
import type { SecuredStack } from './support/secured.ts';
import { type SecuredCluster, securedCluster, securedServers } from './support/secured-cluster.ts';

const SCHEMA = 'create table kv (id int primary key, val text)';

let stack: SecuredStack;
let cluster: SecuredCluster | undefined;

beforeAll(async () => {
  stack = await securedServers('join-secured', [
    { name: 'vlaanderen', nodes: 2 },
    { name: 'wallonie', nodes: 1 },
  ]);
});
afterAll(async () => {
  await cluster?.cleanup();
  await stack?.stop();
});

describe('brabant node join on the secured stack', { timeout: 300_000 }, () => {
  it('joins a node into a secured live cluster; its services run on their own roles; three identical nodes', async () => {
    cluster = await securedCluster(stack, ['vl-1', 'wa-1', 'vl-2'], SCHEMA, ['vl-2']);
    const [vl, wa, joining] = cluster.members as [Member, Member, Member];
    for (const m of [vl, wa]) {
      await cluster.init(m);
      await cluster.startServices(m);
    }
    await vl.client.query(`insert into kv select g, 'before the join' from generate_series(1001, 3000) g`);
    await waitConverged([vl, wa], 'kv', (r) => r.length === 2000);

    const loads = [writeLoad(vl, { keys: 300, pauseMs: 3 }), writeLoad(wa, { keys: 300, pauseMs: 3 })];
    const join = cluster.spawnCli(['node', 'join', joining.id, '--from', vl.id, '--timeout', '120']);
    await join.waitFor(/start capture and apply of/, 180_000);
    expect(join.output()).toMatch(/snapshot of .* at \d+\/[0-9A-F]+/);
    // the command names the set-up the node's services need before they start
    expect(join.output()).toMatch(/set up \S+'s roles and Kafka users \(brabant node init /);
    // copied: now its roles and Kafka users, then its services on them
    await cluster.init(joining);
    await cluster.startServices(joining);
    const code = await join.done;
    console.log(join.output());
    expect(code, join.output()).toBe(0);
    expect(join.output()).toMatch(/caught up with/);
    const sec = cluster.topology.security!;
    const roles = (
      await joining.client.query<{ u: string; app: string; ssl: boolean }>(
        `select a.usename as u, a.application_name as app, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
          where a.datname = current_database() and a.application_name in ($1, $2)`,
        [`brabant-capture-${joining.id}`, `brabant-apply-${joining.id}`],
      )
    ).rows;
    expect(new Set(roles.map((r) => r.u))).toEqual(new Set([sec.captureRole, sec.applyRole]));
    expect(roles.every((r) => r.ssl)).toBe(true);

    const third = writeLoad(joining, { keys: 300, pauseMs: 3 });
    await new Promise((r) => setTimeout(r, 3000));
    const counts = await Promise.all([...loads, third].map((l) => l.stop()));
    console.log(`writes per node: ${counts.map((c) => c.writes).join(', ')}`);
    expect(counts.map((c) => c.failures)).toEqual([0, 0, 0]);
    expect(counts.every((c) => c.writes > 0)).toBe(true);

    const all = [vl, wa, joining];
    await waitConverged(all, 'kv', () => true, 90_000);
    const versions = await Promise.all(all.map((m) => versionedRows(m, 'kv')));
    expect(versions[2]).toEqual(versions[0]);
    expect(versions[1]).toEqual(versions[0]);
    // rows copied kept their writer: those from before the join are vl's
    const early = versions[2]!.filter((l) => l.includes('before the join'));
    expect(early).toHaveLength(2000);
    expect(early.every((l) => l.endsWith(`|${vl.id}`))).toBe(true);
  });
});
