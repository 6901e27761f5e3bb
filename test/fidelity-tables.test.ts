/**
 * Every table shape is captured without Brabant breaking what the application may do: tables
 * without replica identity (pgbench_history as `pgbench -i` creates it) are captured insert-only
 * and the application's own UPDATE and DELETE of them still work; a key added later (rows
 * captured before it) works; a table created later is captured from its first row, also one
 * created and written in one transaction; a node set up by a build with one FOR ALL TABLES
 * publication, whose slot holds changes from before, moves to the two publications without loss.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { DecodedChange, RowChange } from '../services/protocol/change-decoder.ts';
import { CaptureWorld } from './support/capture-db.ts';
import { readChanges } from './support/changes.ts';
import { replicationPair, waitConverged } from './support/pair.ts';
import { region, stack } from './support/stack.ts';

const world = new CaptureWorld();
afterEach(() => world.cleanup());

const brokers = () => region('vlaanderen').kafkaBrokers;
const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

const rows = (changes: DecodedChange[], table: string, op?: string) =>
  changes.filter(
    (c): c is RowChange => c.kind === 'row' && c.table === table && (op === undefined || c.op === op),
  );

function pgbench(url: string, args: string[]): string {
  const u = new URL(url);
  return execFileSync(
    PGBENCH,
    [...args, '-h', u.hostname, '-p', u.port, '-U', u.username, u.pathname.slice(1)],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

describe('table shapes', () => {
  it('captures the pgbench schema as pgbench -i creates it, and pgbench runs unharmed', async () => {
    const { names, client, url } = await world.database('select 1');
    const capture = world.capture(names);
    await capture.waitForLog(/capture session starting/);
    // tables are created and loaded without keys, which are added after the load
    pgbench(url, ['-i', '-s', '1', '-q']);
    pgbench(url, ['-t', '100', '-c', '2', '-n']);
    // the application's own writes to the table without replica identity work
    await client.query('update pgbench_history set delta = delta where tid = 1');
    await client.query('delete from pgbench_history where tid = -1');
    await client.query(`select pg_logical_emit_message(true, 'fidelity.done', '')`);
    const changes = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => cs.some((c) => c.kind === 'control' && c.prefix === 'fidelity.done'),
      120_000,
    );
    // loaded before the key: inserts without key; after it: updates keyed by aid
    expect(rows(changes, 'pgbench_accounts', 'INSERT')).toHaveLength(100_000);
    expect(rows(changes, 'pgbench_accounts', 'INSERT')[0]!.key).toEqual({});
    const updates = rows(changes, 'pgbench_accounts', 'UPDATE');
    expect(updates).toHaveLength(200);
    expect(Object.keys(updates[0]!.key!)).toEqual(['aid']);
    expect(rows(changes, 'pgbench_history', 'INSERT')).toHaveLength(200);
    expect(rows(changes, 'pgbench_history', 'UPDATE')).toEqual([]);
    expect(capture.lines.join('\n')).toMatch(
      /table public.pgbench_history has no replica identity: only its inserts and truncates are captured/,
    );
    expect(capture.lines.join('\n')).not.toMatch(/session failed|paused/);
  });

  it('captures a table created later from its first row (also in its creating transaction), and a key added later', async () => {
    const { names, client } = await world.database('create table first (id int primary key)');
    const capture = world.capture(names);
    await capture.waitForLog(/capture session starting/);
    await client.query('begin');
    await client.query('create table later (id int primary key, v text)');
    await client.query(`insert into later values (1, 'same transaction')`);
    await client.query('create table later_nokey (v text)');
    await client.query(`insert into later_nokey values ('same transaction')`);
    await client.query('commit');
    await client.query(`insert into later_nokey values ('before the key')`);
    // a key added later moves the table into the publication of updates, in the DDL's transaction
    // (by the safe recipe: a serial column added to existing rows is refused, each node would
    // number them its own way)
    await client.query('alter table later_nokey add column id int');
    await client.query(`update later_nokey l set id = x.n from (select ctid, row_number() over (order by ctid) as n from later_nokey) x
      where l.ctid = x.ctid`);
    await client.query('alter table later_nokey alter column id set not null, add primary key (id)');
    await client.query(`update later_nokey set v = 'updated' where id = 1`);
    await client.query('delete from later_nokey where id = 2');
    // and a key dropped moves it back: the application's updates keep working
    await client.query('alter table later_nokey drop constraint later_nokey_pkey');
    await client.query(`update later_nokey set v = 'local only'`);
    await client.query(`insert into later_nokey values ('without key again', 3)`);
    const changes = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => rows(cs, 'later_nokey', 'INSERT').length >= 3,
    );
    expect(rows(changes, 'later').map((c) => c.after!.v)).toEqual(['same transaction']);
    expect(
      rows(changes, 'later_nokey').map((c) => `${c.op} ${JSON.stringify(c.key)} ${String(c.after?.v)}`),
    ).toEqual([
      'INSERT {} same transaction',
      'INSERT {} before the key',
      'UPDATE {"id":"1"} updated',
      'DELETE {"id":"2"} undefined',
      'INSERT {} without key again',
    ]);
    expect(capture.lines.join('\n')).not.toMatch(/paused|session failed/);
    // with the publications dropped by hand, the event trigger warns but never fails the application's DDL
    await capture.kill('SIGKILL');
    await client.query(`drop publication ${names.publication}, ${names.publication}_inserts`);
    await client.query('create table after_drop (v text)');
  });

  it('moves a node from a FOR ALL TABLES publication with pending changes to the two publications without loss', async () => {
    const { names, client } = await world.database(
      'create table t (id int primary key); create table h (v text)',
    );
    // what an earlier build set up: one FOR ALL TABLES publication, and a slot with changes in it
    await client.query(`create publication ${names.publication} for all tables`);
    await client.query(`select pg_create_logical_replication_slot('${names.slot}', 'pgoutput')`);
    await client.query('insert into t values (1), (2)');
    const capture = world.capture(names);
    await capture.waitForLog(/capture session starting/);
    await client.query('insert into t values (3)');
    await client.query(`insert into h values ('keyless, after the move')`);
    await client.query(`update h set v = v`);
    const changes = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => rows(cs, 'h').length >= 1,
    );
    expect(rows(changes, 't').map((c) => c.after!.id)).toEqual(['1', '2', '3']);
    expect(rows(changes, 'h').map((c) => c.after!.v)).toEqual(['keyless, after the move']);
    const pubs = await client.query<{ pubname: string; puballtables: boolean }>(
      'select pubname, puballtables from pg_publication order by 1',
    );
    expect(pubs.rows).toEqual([
      { pubname: names.publication, puballtables: false },
      { pubname: `${names.publication}_inserts`, puballtables: false },
    ]);
    expect(capture.lines.join('\n')).toMatch(/starting again with both publications/);
  });

  it('replicates the pgbench schema to the peer as pgbench creates it and with REPLICA IDENTITY FULL on pgbench_history', async () => {
    const pair = await replicationPair('select 1');
    world.later(() => pair.cleanup());
    await Promise.all([
      pair.capture(pair.vl).waitForLog(/capture session starting/),
      pair.apply(pair.wa).waitForLog(/apply session running/),
    ]);
    // the source as pgbench creates it (tables, the load, then the keys): the peer gets the same
    // schema through DDL replication, in the stream's order among the loaded rows
    pgbench(pair.vl.url, ['-i', '-s', '1', '-q']);
    pgbench(pair.vl.url, ['-t', '50', '-c', '2', '-n']);
    for (const table of ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history'])
      await waitConverged(pair.sides, table, (r) => r.length > 0, 60_000);
    await pair.vl.client.query('alter table pgbench_history replica identity full');
    pgbench(pair.vl.url, ['-t', '50', '-c', '2', '-n']);
    await waitConverged(pair.sides, 'pgbench_history', (r) => r.length === 200, 60_000);
  });
});
