/**
 * `brabant ddl apply` and `check`: a schema change is checked with the schema registry before any
 * node changes and refused when incompatible or when the registry cannot be reached; a compatible
 * one runs on its node and the command waits until every node has applied it, naming the node
 * that has not yet (which applies it in order when it returns). `brabant ddl resolve` answers a
 * DDL that failed on a node.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { brabant } from './support/cli.ts';
import { type Pair, replicationPair } from './support/pair.ts';
import { schemaDump } from './support/schema.ts';
import { stack } from './support/stack.ts';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

/** The CLI against the test stack, in this test's databases and topics. */
function ddl(p: Pair, args: string[]) {
  const db = new URL(p.vl.url).pathname.slice(1);
  return brabant(['ddl', ...args, '--database', db, '--topic', p.vl.names.topic], {
    ...process.env,
    BRABANT_HOME: stack().workDir,
  });
}

describe('registry-gated DDL rollout', () => {
  it('checks a change with the registry, runs it, and waits until every node has applied it', async () => {
    pair = await replicationPair('create table t (id int primary key, v text, n int)');
    const { vl, wa } = pair;
    const started = pair.sides.flatMap((s) => [
      pair!.capture(s).waitForLog(/capture session starting/),
      pair!.apply(s).waitForLog(/apply session running/),
    ]);
    await Promise.all(started);
    await vl.client.query(`insert into t values (1, 'a', 1)`); // the table's first version is registered

    const check = await ddl(pair, ['check', '--node', 'vl-1', 'alter table t add column note text']);
    expect(check.out).toMatch(/checked with the registry: public.t compatible/);
    expect(check.code).toBe(0);
    expect(schemaDump(vl.url)).not.toContain('note text'); // a check changes nothing

    const applied = await ddl(pair, ['apply', '--node', 'vl-1', 'alter table t add column note text']);
    expect(applied.out).toMatch(/applied on every node \(vl-1, wa-1\)/);
    expect(applied.code).toBe(0);
    expect(schemaDump(wa.url)).toContain('note text');

    // binary-coercible, so PostgreSQL allows it without a rewrite, but int → oid changes the Avro
    // type from int to string: the registry's BACKWARD rule refuses it, before any node changes
    const refused = await ddl(pair, ['apply', '--node', 'vl-1', 'alter table t alter column n type oid']);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(
      /SCHEMA_INCOMPATIBLE: the change is refused before any node changed: table public.t/,
    );
    expect(schemaDump(vl.url)).toContain('n integer');

    const unreachable = await ddl(pair, [
      'check',
      '--node',
      'vl-1',
      '--registry',
      'http://127.0.0.1:9/apis/ccompat/v7',
      'alter table t add column other int',
    ]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.out).toMatch(
      /REGISTRY_ERROR: schema registry at http:\/\/127.0.0.1:9.* is unreachable/,
    );

    const syntax = await ddl(pair, ['apply', '--node', 'vl-1', 'alter tabel t add column x int']);
    expect(syntax.code).toBe(1);
    expect(syntax.out).toMatch(/syntax error at or near "tabel"/);
  });

  it('says which node has not applied a change yet; the node applies it in order when its apply returns', async () => {
    pair = await replicationPair('create table t (id int primary key, v text)');
    const { vl, wa } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    await pair.capture(wa).waitForLog(/capture session starting/);
    const waApplyStarted = Date.now();
    const out = await ddl(pair, [
      'apply',
      '--node',
      'vl-1',
      '--timeout',
      '3',
      'create table u (id int primary key)',
    ]);
    expect(out.code).toBe(1);
    expect(out.out).toMatch(
      /not every node has applied the change after 3 s: wa-1 not yet applied to public.u/,
    );
    await vl.client.query(`insert into u values (1)`);
    await pair.apply(wa).waitForLog(/apply session running/);
    const deadline = Date.now() + 60_000;
    while (!schemaDump(wa.url).includes('TABLE public.u') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect(schemaDump(wa.url)).toContain('CREATE TABLE public.u');
    expect(Date.now()).toBeGreaterThan(waApplyStarted);
  });

  it('resolves a DDL that failed on a node: retry after the obstacle is gone', async () => {
    pair = await replicationPair('create table t (id int primary key, v text)');
    const { vl, wa } = pair;
    await wa.client.query('create table clash (x text primary key)');
    await Promise.all(
      pair.sides.flatMap((s) => [
        pair!.capture(s).waitForLog(/capture session starting/),
        pair!.apply(s).waitForLog(/apply session running/),
      ]),
    );
    await vl.client.query('create table clash (id int primary key)');
    const deadline = Date.now() + 60_000;
    const failed = async () =>
      Number(
        (await wa.client.query(`select count(*) from brabant.conflicts where kind = 'ddl_failed'`)).rows[0]
          .count,
      );
    while ((await failed()) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const none = await ddl(pair, ['resolve', '--node', 'vl-1', '--retry']);
    expect(none.out).toMatch(/no failed DDL waits on vl-1/);
    // the obstacle goes on wa-1 alone (its drop must not replicate to vl-1)
    await wa.client.query('begin; set local brabant.ddl_replication = off; drop table clash; commit');
    const retried = await ddl(pair, ['resolve', '--node', 'wa-1', '--retry']);
    expect(retried.out).toMatch(
      /retrying on wa-1: .*'s DDL at .* \(create table clash \(id int primary key\); it failed with: relation "clash" already exists/,
    );
    while (
      !schemaDump(wa.url).includes('CREATE TABLE public.clash (\n    id integer NOT NULL') &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 200));
    expect(schemaDump(wa.url)).toBe(schemaDump(vl.url));
  });
});
