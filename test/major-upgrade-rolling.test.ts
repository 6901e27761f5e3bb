/**
 * A PostgreSQL major upgrade without downtime, the rolling way: Vlaanderen's node runs
 * PostgreSQL 15 behind its region's router, Wallonie's too; clients write through the router
 * and in Wallonie on the same keys (conflicts) the whole time. A node on PostgreSQL 17 joins from
 * the PostgreSQL 15 node (the mixed cluster: DDL from a 17 node reaches the 15 nodes and DDL from
 * a 15 node the 17 one, rows flow both ways), the router is switched over to it, and the 15 node
 * is parted. No client transaction fails, and the nodes left hold the same rows with the same
 * versions (commit time and node).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import { type Cluster, type Member, nodeServers, replicationCluster, server } from './support/cluster.ts';
import { versionedRows, writeLoad } from './support/load.ts';
import { waitConverged } from './support/pair.ts';
import { node } from './support/stack.ts';

const SCHEMA = 'create table kv (id int primary key, val text)';
/** Applies let go of a parted node at once (its origin dropped), not at the next minute's tick. */
const FAST_PRUNE = { BRABANT_APPLY_PRUNE_INTERVAL_MS: '300' };

let servers: Stack;
let cluster: Cluster | undefined;
const clients: pg.Client[] = [];

beforeAll(async () => {
  servers = await nodeServers('major', [{ name: 'vlaanderen', nodes: 1 }], { 'vl-1': 17 });
});
afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await cluster?.cleanup();
  await servers?.stop();
});

const major = async (m: Member) =>
  Math.floor(
    Number((await m.client.query(`select current_setting('server_version_num') as v`)).rows[0].v) / 10000,
  );

/** Its columns by name: their order may differ (each node adds the other's after its own). */
const columns = async (m: Member) =>
  (
    await m.client.query<{ c: string }>(
      `select column_name as c from information_schema.columns where table_name = 'kv' order by 1`,
    )
  ).rows.map((r) => r.c);

describe('PostgreSQL major upgrade by join, switchover and part', { timeout: 360_000 }, () => {
  it('moves a region from PostgreSQL 15 to 17 under client load through the router: none fails, nothing lost', async () => {
    cluster = await replicationCluster(SCHEMA, [node('vl-1'), node('wa-1')]);
    const [old, wa] = cluster.members as [Member, Member];
    const services = new Map<string, Awaited<ReturnType<Cluster['startServices']>>>();
    for (const m of [old, wa]) services.set(m.id, await cluster.startServices(m, { apply: FAST_PRUNE }));
    const router = await cluster.router('vlaanderen');
    const viaRouter = new pg.Client({ connectionString: router.url });
    viaRouter.on('error', () => {});
    await viaRouter.connect();
    clients.push(viaRouter);
    await old.client.query(
      `insert into kv select g, 'before the upgrade' from generate_series(1001, 3000) g`,
    );

    // clients write through the router (to the 15 node for now) and in Wallonie, on the same keys
    const loads = [
      writeLoad({ ...old, id: 'router', client: viaRouter }, { keys: 300, pauseMs: 3 }),
      writeLoad(wa, { keys: 300, pauseMs: 3 }),
    ];

    const region = cluster.regions.get('vlaanderen')!;
    const newer = await cluster.add(server(servers, 'vl-1'), { empty: true, region: 'vlaanderen' });
    expect(await major(old)).toBe(15);
    expect(await major(newer)).toBe(17);
    const join = cluster.spawnCli(['node', 'join', newer.id, '--from', old.id, '--timeout', '120']);
    await join.waitFor(/start capture and apply of/, 180_000);
    services.set(newer.id, await cluster.startServices(newer, { apply: FAST_PRUNE }));
    const joined = await join.done;
    console.log(joined.out);
    expect(joined.code, joined.out).toBe(0);
    expect(joined.out).toMatch(/added to the router of/);

    // the mixed cluster: DDL both ways between the 15 and 17 nodes while the load goes on
    await newer.client.query('alter table kv add column note text');
    await wa.client.query('alter table kv add column n int');
    for (const m of [old, wa, newer])
      await expect.poll(() => columns(m), { timeout: 60_000 }).toEqual(['id', 'n', 'note', 'val']);
    await newer.client.query(`insert into kv (id, val, note, n) values (5000, 'from 17', 'a note', 17)`);
    await wa.client.query(`insert into kv (id, val, note, n) values (5001, 'from 15', 'a note', 15)`);
    for (const m of [old, wa, newer])
      await expect
        .poll(
          async () =>
            (await m.client.query(`select id, n from kv where note = 'a note' order by id`)).rows.map(
              (r) => `${r.id}:${r.n}`,
            ),
          { timeout: 30_000 },
        )
        .toEqual(['5000:17', '5001:15']);

    // the router moves Vlaanderen's writes to the 17 node; the 15 node leaves
    const moved = await cluster.cli(['switchover', '--region', region, '--to', newer.id]);
    expect(moved.code, moved.out).toBe(0);
    const status = (await (await fetch(`${router.control}/status`)).json()) as { leader?: string };
    expect(status.leader).toBe(newer.id);
    await new Promise((r) => setTimeout(r, 1000)); // writes flow through the 17 node a while
    // rows written through the router before the switchover have the 15 node as their writer
    const early = (await versionedRows(newer, 'kv')).filter((l) => l.includes('before the upgrade'));
    expect(early.filter((l) => l.endsWith(`|${old.id}`))).toHaveLength(2000);
    const own = services.get(old.id)!;
    await own.capture.stop();
    await own.apply.stop();
    const parted = await cluster.cli(['node', 'part', old.id, '--timeout', '60']);
    console.log(parted.out);
    expect(parted.code, parted.out).toBe(0);
    await new Promise((r) => setTimeout(r, 2000));

    const counts = await Promise.all(loads.map((l) => l.stop()));
    console.log(`writes through the router, in Wallonie: ${counts.map((c) => c.writes).join(', ')}`);
    expect(counts.map((c) => c.failures)).toEqual([0, 0]);
    expect(counts.every((c) => c.writes > 0)).toBe(true);

    // the parted node's origin is dropped on both: its rows keep their time, no longer its name
    for (const m of [newer, wa])
      await expect
        .poll(
          async () =>
            (
              await m.client.query('select 1 from pg_replication_origin where roname = $1', [
                `brabant_${old.id}`,
              ])
            ).rowCount,
          { timeout: 30_000 },
        )
        .toBe(0);
    const converged = await waitConverged([newer, wa], 'kv', () => true, 90_000).catch((e: Error) => e);
    // the same versions on both; the parted node's name on its rows goes once each node dropped its
    // origin, which a node lets go of again when an applier took it up meanwhile (apply's
    // releaseParted runs with every pruning round): polled, not read once
    let [a, b] = await Promise.all([newer, wa].map((m) => versionedRows(m, 'kv')));
    const deadline = Date.now() + 130_000; // two rounds of BRABANT_APPLY_PRUNE_INTERVAL_MS (60 s)
    while (
      !(converged instanceof Error) &&
      JSON.stringify(a) !== JSON.stringify(b) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 1000));
      [a, b] = await Promise.all([newer, wa].map((m) => versionedRows(m, 'kv')));
    }
    if (converged instanceof Error) {
      const only = (x: string[], y: string[]) => x.filter((l) => !y.includes(l));
      const diff = only(a!, b!).filter((l) => !l.includes('before the upgrade'));
      console.log(
        `only on ${newer.id}:\n${diff.join('\n')}\nonly on ${wa.id}:\n${only(b!, a!)
          .filter((l) => !l.includes('before the upgrade'))
          .join('\n')}`,
      );
      const keys = diff.map((l) => Number(l.split('|')[0]));
      for (const m of [newer, wa]) {
        const r = await m.client.query(
          `select logged_at, kind, resolution, local_row->>'val' lv, local_commit_ts, local_node, remote_row->>'val' rv, remote_commit_ts, remote_node from brabant.conflicts where (key->>'id')::int = any($1) order by key->>'id', logged_at`,
          [keys],
        );
        console.log(`conflicts on ${m.id}:\n${r.rows.map((x) => JSON.stringify(x)).join('\n')}`);
      }
      const o = await newer.client.query('select roident, roname from pg_replication_origin');
      console.log(`origins on ${newer.id}: ${JSON.stringify(o.rows)}`);
      const prog = await newer.client.query(
        `select external_id, remote_lsn::text, local_lsn::text from pg_replication_origin_status`,
      );
      console.log(`origin progress on ${newer.id}: ${JSON.stringify(prog.rows)}`);
      const act = await newer.client.query(
        `select application_name, state, wait_event_type, wait_event, xact_start::text, left(query, 160) q from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`,
      );
      console.log(`sessions on ${newer.id}:\n${act.rows.map((x) => JSON.stringify(x)).join('\n')}`);
      const waLast = await wa.client.query(
        `select confirmed_flush_lsn::text c from pg_replication_slots where slot_name = $1`,
        [`brabant_${wa.id}`],
      );
      console.log(`wa slot confirmed: ${JSON.stringify(waLast.rows)}`);
    }
    expect(a).toEqual(b);
    expect(
      a!.filter((l) => l.includes('before the upgrade') && l.endsWith('|(a dropped origin)')),
    ).toHaveLength(2000);
  });
});
