/**
 * Replicated DDL on the secured stack, where apply is no superuser and owns nothing
 * (docs/security.md, "DDL replay and table ownership"): an application role given to node init
 * as a DDL role creates and alters its tables on one node, and the peer replays it as that role —
 * the new table is the role's there too and apply writes its rows; the role sets its own table's
 * conflict policy; a superuser's ALTER of the role's table replays as the table's owner; and a
 * superuser's CREATE TABLE, which no role apply may become can run, pauses the stream with a
 * reason that names the role and the fix.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pair } from './support/pair.ts';
import { type SecuredStack, securedPair, securedStack } from './support/secured.ts';
import type { ServiceProcess } from './support/services.ts';

const APP = 'app_owner';
let stack: SecuredStack;
let pair: Pair | undefined;
const launched: ServiceProcess[] = [];

beforeAll(async () => {
  stack = await securedStack('ddl-roles');
}, 240_000);
afterAll(async () => {
  for (const p of launched) await p.kill('SIGKILL');
  await pair?.cleanup();
  await stack?.stop();
});

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const ownerOf = async (c: pg.Client, table: string) =>
  (
    await c.query<{ o: string | null }>(
      'select (select relowner::regrole::text from pg_class where oid = to_regclass($1)) as o',
      [table],
    )
  ).rows[0]!.o ?? undefined;

const hasColumn = async (c: pg.Client, table: string, column: string) =>
  (
    await c.query(
      'select 1 from pg_attribute where attrelid = to_regclass($1) and attname = $2 and not attisdropped',
      [table, column],
    )
  ).rowCount === 1;

describe('replicated DDL with a non-superuser apply', { timeout: 240_000 }, () => {
  it('replays a DDL role’s DDL as it, a superuser’s ALTER of its table as the owner, and pauses a superuser’s CREATE TABLE with the fix', async () => {
    pair = await securedPair(
      stack,
      // on both nodes before the set-up (not replicated): the application's role, owner of its table
      `do $$ begin if not exists (select 1 from pg_roles where rolname = '${APP}') then create role ${APP}; end if; end $$;
       grant create on schema public to ${APP};
       create table accounts (id int primary key, v int not null default 0);
       alter table accounts owner to ${APP};`,
      { ddlRoles: [APP] },
    );
    const procs = [pair.capture(pair.vl), pair.apply(pair.vl), pair.capture(pair.wa), pair.apply(pair.wa)];
    launched.push(...procs);
    await Promise.all(
      procs.map((p) =>
        p.waitForLog(p.kind === 'capture' ? /capture session starting/ : /apply session running/),
      ),
    );
    const vl = pair.vl.client;
    const wa = pair.wa.client;

    // the DDL role creates a table: on the peer it is the role's, and apply writes its rows
    await vl.query(`set role ${APP}`);
    await vl.query('create table orders (id int primary key, note text)');
    await vl.query('reset role');
    expect(await until('orders on wa', () => ownerOf(wa, 'public.orders'))).toBe(APP);
    await vl.query("insert into orders values (1, 'first')");
    await until(
      'the row of orders on wa',
      async () => (await wa.query('select note from orders where id = 1')).rows[0]?.note,
    ).then((note) => expect(note).toBe('first'));

    // it alters its table and sets the table's conflict policy
    await vl.query(`set role ${APP}`);
    await vl.query('alter table accounts add column extra text');
    await vl.query("select brabant.set_conflict_policy('accounts', 'delta', array['v'])");
    await vl.query('reset role');
    await until(
      'the policy of accounts on wa',
      async () =>
        (
          await wa.query<{ d: string[] }>(
            "select delta_columns as d from brabant.conflict_policies where table_name = 'public.accounts'",
          )
        ).rows[0]?.d.includes('v') || undefined,
    );
    expect(await hasColumn(wa, 'public.accounts', 'extra')).toBe(true);

    // a superuser's ALTER of the role's table: replayed as the table's owner
    await vl.query('alter table accounts add column by_dba int');
    await until(
      'the superuser’s column on wa',
      async () => (await hasColumn(wa, 'public.accounts', 'by_dba')) || undefined,
    );
    expect(await ownerOf(wa, 'public.accounts')).toBe(APP);

    // a superuser's CREATE TABLE: no role apply may become can run it; the stream pauses, saying why
    await vl.query('create table dba_only (id int primary key)');
    const reason = await until(
      'the failed DDL in wa’s conflict log',
      async () =>
        (
          await wa.query<{ r: string }>(
            "select remote_row ->> 'reason' as r from brabant.conflicts where kind = 'ddl_failed' and remote_row ->> 'statement' like '%dba_only%'",
          )
        ).rows[0]?.r,
    );
    expect(reason).toMatch(/permission denied for schema public/);
    expect(reason).toMatch(/ran as postgres on .*a role apply may not become here/);
    expect(reason).toMatch(/--ddl-roles/);
    expect(await ownerOf(wa, 'public.dba_only')).toBeUndefined();
    // nothing after it is applied on wa (paused, not skipped)
    await vl.query("insert into orders values (2, 'after the failed DDL')");
    await new Promise((r) => setTimeout(r, 2000));
    expect((await wa.query('select count(*)::int as n from orders')).rows[0].n).toBe(1);
  });
});
