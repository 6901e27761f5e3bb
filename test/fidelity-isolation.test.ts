import { afterEach, describe, expect, it } from 'vitest';
import type { DecodedChange, RowChange } from '../services/protocol/change-decoder.ts';
import { CaptureWorld } from './support/capture-db.ts';
import { metric, readChanges, readDeadLetters } from './support/changes.ts';
import { region, stack } from './support/stack.ts';

const world = new CaptureWorld();
afterEach(() => world.cleanup());

const brokers = () => region('vlaanderen').kafkaBrokers;

const rows = (changes: DecodedChange[], table: string) =>
  changes.filter((c): c is RowChange => c.kind === 'row' && c.table === table);
const markers = (changes: DecodedChange[]) =>
  changes.filter((c) => c.kind === 'control' && c.prefix === 'brabant.deadletter');

describe('capture isolates what it cannot capture', () => {
  it('value: bytes that are not UTF-8 go to the dead-letter topic whole; the rest of the transaction and the node flow', async () => {
    const { names, client } = await world.database(
      'create table good (id int primary key, v text); create table bad (id int primary key, v text)',
      'SQL_ASCII',
    );
    const capture = world.capture(names);
    await capture.waitForLog(/capture session starting/);
    await client.query('begin');
    await client.query(`insert into good values (1, 'before')`);
    // 'café' in Latin-1: a SQL_ASCII database stores any bytes
    await client.query(`insert into bad values (1, E'caf\\xe9'), (2, 'plain')`);
    await client.query(`insert into good values (2, 'after, same transaction')`);
    await client.query('commit');
    await client.query(`insert into good values (3, 'next transaction')`);
    const changes = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => rows(cs, 'good').length >= 3,
    );
    expect(rows(changes, 'good').map((c) => c.after!.v)).toEqual([
      'before',
      'after, same transaction',
      'next transaction',
    ]);
    // the plain row of the same table is not held back with it
    expect(rows(changes, 'bad').map((c) => c.after!.id)).toEqual(['2']);
    expect(markers(changes)).toHaveLength(1);
    const letters = await readDeadLetters(brokers(), names.nodeId, (ls) => ls.length >= 1);
    expect(letters).toHaveLength(1);
    expect(letters[0]!.body).toMatchObject({
      table: 'public.bad',
      code: 'VALUE_UNREPRESENTABLE',
      reason: 'public.bad.v: a value of 4 bytes is not valid UTF-8',
      fix: expect.stringContaining('UTF8'),
      change: {
        op: 'INSERT',
        after: { id: '1', v: { base64: Buffer.from('caf\xe9', 'latin1').toString('base64') } },
      },
    });
    expect(letters[0]!.headers['brabant.table']).toBe('public.bad');
    expect(await metric(capture, 'brabant_capture_dead_letters_total{code="VALUE_UNREPRESENTABLE"}')).toBe(1);
    expect(capture.lines.join('\n')).toMatch(
      /change of public.bad sent to brabant.deadletter: public.bad.v: a value of 4 bytes is not valid UTF-8; .*UTF8/,
    );
  });

  it('table: a type dropped before capture read its table pauses that table only; its changes are dead-lettered', async () => {
    const { names, client } = await world.database('create table good (id int primary key, v text)');
    const first = world.capture(names);
    await first.waitForLog(/capture session starting/);
    await first.kill('SIGKILL');
    // while capture is away: a table of a type that is gone by the time capture reads the catalog
    await client.query(
      `create type fleeting as enum ('a', 'b'); create table gone (id int primary key, m fleeting)`,
    );
    await client.query(`insert into gone values (1, 'a'), (2, 'b')`);
    await client.query(`insert into good values (1, 'while away')`);
    await client.query('drop table gone; drop type fleeting');
    await client.query(`insert into good values (2, 'after the drop')`);
    const capture = world.capture(names);
    const changes = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => rows(cs, 'good').length >= 2,
    );
    expect(rows(changes, 'good').map((c) => c.after!.v)).toEqual(['while away', 'after the drop']);
    expect(markers(changes)).toHaveLength(2);
    const letters = await readDeadLetters(brokers(), names.nodeId, (ls) => ls.length >= 2);
    expect(letters.map((l) => [l.body.table, l.body.code, l.body.change.after])).toEqual([
      ['public.gone', 'CATALOG_MISMATCH', { id: '1', m: 'a' }],
      ['public.gone', 'CATALOG_MISMATCH', { id: '2', m: 'b' }],
    ]);
    expect(letters[0]!.body.reason).toMatch(/table public.gone: type oid\(s\) \d+ not found in pg_type/);
    expect(await metric(capture, 'brabant_capture_table_paused{table="public.gone"}')).toBe(1);
    expect(await metric(capture, 'brabant_capture_dead_letters_total{code="CATALOG_MISMATCH"}')).toBe(2);
    expect(capture.lines.join('\n')).toMatch(
      /table public.gone is paused: its changes go to brabant.deadletter until/,
    );
  });

  it('table: a column type change the registry refuses pauses that table until fixed; the node flows meanwhile', async () => {
    const { names, client } = await world.database(
      'create table good (id int primary key, v text); create table typed (id int primary key, n int)',
    );
    const capture = world.capture(names);
    await capture.waitForLog(/capture session starting/);
    await client.query('insert into typed values (1, 1)');
    await readChanges(brokers(), stack().registryUrl, names.topic, (cs) => rows(cs, 'typed').length >= 1);
    // int → text: a reader of the new version cannot read the old one (the registry's BACKWARD
    // rule). Brabant's DDL replication refuses such a rewrite; made on this node alone, the
    // registry still stops it at capture
    await client.query(
      'begin; set local brabant.ddl_replication = off; alter table typed alter column n type text; commit',
    );
    await client.query(`insert into typed values (2, 'two')`);
    await client.query(`insert into good values (1, 'flows')`);
    const changes = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => rows(cs, 'good').length >= 1,
    );
    expect(rows(changes, 'typed').map((c) => c.after!.id)).toEqual(['1']);
    await capture.waitForLog(/table public.typed is paused/);
    expect(await metric(capture, 'brabant_capture_table_paused{table="public.typed"}')).toBe(1);
    const letters = await readDeadLetters(brokers(), names.nodeId, (ls) => ls.length >= 1);
    expect(letters[0]!.body).toMatchObject({
      table: 'public.typed',
      code: 'SCHEMA_INCOMPATIBLE',
      change: { after: { id: '2', n: 'two' } },
    });
    expect(letters[0]!.body.fix).toMatch(/make the change compatible/);
    // a fix the message names: make the change compatible (int → bigint is, for the registered version)
    await client.query(
      'begin; set local brabant.ddl_replication = off; alter table typed alter column n type bigint using length(n); commit',
    );
    await client.query('insert into typed values (3, 3)');
    const after = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => rows(cs, 'typed').length >= 2,
    );
    expect(rows(after, 'typed').map((c) => c.after!.n)).toEqual(['1', '3']);
    expect(await metric(capture, 'brabant_capture_table_paused{table="public.typed"}')).toBe(0);
  });

  it('row: a row over the topic message limit is split into records and arrives whole; rows after it flow', async () => {
    const { names, client } = await world.database(
      'create table docs (id int primary key, body text); create table good (id int primary key)',
    );
    const capture = world.capture(names);
    await capture.waitForLog(/capture session starting/);
    // 2 MB of hardly compressible text, and a 20 MB one: over Kafka's 1 MB default record limit
    const big = (bytes: number) =>
      `(select string_agg(md5(g::text), '') from generate_series(1, ${bytes / 32}) g)`;
    await client.query(`insert into docs values (1, ${big(2 * 1024 * 1024)}), (2, ${big(20 * 1024 * 1024)})`);
    await client.query('insert into good values (1)');
    const changes = await readChanges(
      brokers(),
      stack().registryUrl,
      names.topic,
      (cs) => rows(cs, 'good').length >= 1,
      120_000,
    );
    const docs = rows(changes, 'docs');
    const expected = await client.query<{ id: number; md5: string }>(
      'select id, md5(body) from docs order by id',
    );
    expect(docs.map((c) => c.after!.body!.toString().length)).toEqual([2 * 1024 * 1024, 20 * 1024 * 1024]);
    const { createHash } = await import('node:crypto');
    expect(
      docs.map((c) =>
        createHash('md5')
          .update(c.after!.body as string)
          .digest('hex'),
      ),
    ).toEqual(expected.rows.map((r) => r.md5));
    expect(markers(changes)).toEqual([]);
    expect(await metric(capture, 'brabant_capture_split_events_total')).toBe(2);
  });
});
