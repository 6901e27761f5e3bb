/**
 * DDL replication in stream order: schema changes made on one node reach the other exactly where
 * they happened among the rows, with no global lock, while the other region keeps writing in
 * the old shape; refused statements never run; a DDL that fails on the peer pauses only its
 * origin's stream until the operator resolves it.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, type Side, waitConverged } from './support/pair.ts';
import { schemaDump } from './support/schema.ts';
import { region, stack } from './support/stack.ts';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

async function startAll(p: Pair): Promise<void> {
  await Promise.all(
    p.sides.flatMap((s) => [
      p.capture(s).waitForLog(/capture session starting/),
      p.apply(s).waitForLog(/apply session running/),
    ]),
  );
}

/** Waits until both nodes print the same schema (and it satisfies `check`). */
async function waitSameSchema(
  p: Pair,
  check: (dump: string) => boolean,
  timeoutMs = 60_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [a, b] = p.sides.map((s) => schemaDump(s.url));
    if (a === b && check(a!)) return a!;
    if (Date.now() > deadline)
      throw new Error(
        `schemas differ after ${timeoutMs} ms:\n--- ${p.vl.names.nodeId}\n${a}\n--- ${p.wa.names.nodeId}\n${b}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Writes rows of `table` on `side` until stopped (old-shape writes while the other node changes it). */
function writer(side: Side, sql: (i: number) => string) {
  let running = true;
  let n = 0;
  const done = (async () => {
    while (running) {
      await side.client.query(sql(n++));
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return n;
    },
  };
}

describe('DDL replication', () => {
  it('replicates tables, columns, indexes, constraints, types, views, functions, triggers and comments in stream order while the other region writes', async () => {
    pair = await replicationPair('create table base (id int primary key, v text)');
    const { vl, wa } = pair;
    await startAll(pair);

    // a table made on one node, written at once in the same transaction
    await vl.client.query(`begin;
      create table orders (id bigint primary key, note text not null default '');
      insert into orders select g, 'vl ' || g from generate_series(1, 50) g;
      commit`);
    await waitConverged(pair.sides, 'orders', (r) => r.length === 50);

    // Wallonie writes the old shape while Vlaanderen adds a column and writes the new shape
    const w = writer(wa, (i) => `insert into orders (id, note) values (${100_000 + i}, 'wa old shape')`);
    await vl.client.query('alter table orders add column qty int');
    await vl.client.query(`insert into orders select g, 'vl new', g from generate_series(51, 100) g`);
    // an update of the new column, seen by Wallonie before it writes that row again
    await vl.client.query('update orders set qty = 7 where id = 1');
    await waitConverged([wa], 'orders', (r) => r.some((x) => x.includes('"qty":7')));
    await wa.client.query(`update orders set note = 'wa touched' where id = 1`);
    const written = await w.stop();
    expect(written).toBeGreaterThan(0);

    await vl.client.query(`create type mood as enum ('sad', 'ok');
      alter type mood add value 'happy';
      alter table orders add column mood mood;
      create domain positive as int check (value > 0);
      alter table orders add column n int check (n > 0)`);
    // CONCURRENTLY runs outside a transaction: its own statement, here and on the peer
    await vl.client.query('create index concurrently orders_note on orders (note)');
    await vl.client.query(`alter table orders add constraint qty_small check (qty < 1000000) not valid`);
    await vl.client.query(`alter table orders validate constraint qty_small`);
    await vl.client.query(`comment on table orders is 'what people bought'`);
    await vl.client.query(`create view big_orders as select id, qty from orders where qty > 10`);
    await vl.client.query(`create function bump(x int) returns int language sql immutable as 'select x + 1'`);
    await vl.client.query(
      `create table audit (id bigserial primary key, at timestamptz default now(), what text)`,
    );
    await vl.client.query(`create function note_changed() returns trigger language plpgsql as $$
      begin new.note := trim(new.note); return new; end $$`);
    await vl.client.query(
      `create trigger orders_trim before insert or update on orders for each row execute function note_changed()`,
    );
    await vl.client.query(
      `insert into orders (id, note, qty, mood, n) values (200, '  padded  ', 3, 'happy', 1)`,
    );
    await vl.client.query('alter table orders drop column n');
    await vl.client.query('drop table base');

    const dump = await waitSameSchema(
      pair,
      (d) => d.includes('orders_trim') && !d.includes('TABLE public.base'),
    );
    expect(dump).toContain("CREATE TYPE public.mood AS ENUM (\n    'sad',\n    'ok',\n    'happy'\n);");
    expect(dump).toContain('CREATE INDEX orders_note ON public.orders USING btree (note);');
    expect(dump).toContain('CONSTRAINT qty_small CHECK ((qty < 1000000))');
    expect(dump).toContain("COMMENT ON TABLE public.orders IS 'what people bought';");
    expect(dump).toContain('CREATE VIEW public.big_orders AS');
    const rows = await waitConverged(pair.sides, 'orders', (r) => r.some((x) => x.includes('"id":200')));
    expect(rows.find((x) => x.includes('"id":200'))).toContain('"note":"padded"');
    expect(rows.filter((x) => x.includes('wa old shape'))).toHaveLength(written);
    expect(rows.find((x) => x.includes('"id":1,'))).toMatch(/"qty":7/);
    await waitConverged(pair.sides, 'audit');
    // Kafka tools see each DDL between the rows, as a record of its own schema (DdlEvent)
    const python = execFileSync('bash', ['infra/python-client.sh'], { encoding: 'utf8' }).trim();
    const decoded = JSON.parse(
      execFileSync(
        python,
        [
          'test/support/python-decode.py',
          region('vlaanderen').kafkaBrokers.join(','),
          stack().registryUrl,
          vl.names.topic,
        ],
        { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
      ),
    ) as { records: number; decoded: number; failures: unknown[]; statements: string[] };
    expect(decoded.failures).toEqual([]);
    expect(decoded.decoded).toBe(decoded.records);
    expect(decoded.statements).toEqual(
      expect.arrayContaining(['alter table orders add column qty int', 'drop table base']),
    );
  });

  it('refuses statements whose result depends on the node, before they commit, and replicates nothing of them', async () => {
    pair = await replicationPair('create table t (id int primary key, v text)');
    const { vl } = pair;
    await startAll(pair);
    await vl.client.query(`insert into t values (1, 'a')`);
    const refused = async (sql: string) =>
      vl.client.query(sql).then(
        () => undefined,
        (e: Error & { hint?: string }) => `${e.message} | ${e.hint}`,
      );
    expect(await refused('alter table t add column r float8 default random()')).toMatch(
      /refuses to rewrite t for a volatile default.*\| add the column without a default/,
    );
    expect(await refused('alter table t add column at timestamptz default now()')).toMatch(
      /refuses ADD COLUMN at of t with DEFAULT now\(\).*\| add the column without a default, then ALTER COLUMN … SET DEFAULT/,
    );
    expect(await refused('alter table t alter column id type bigint')).toMatch(
      /refuses ALTER COLUMN … TYPE on t.*expand and contract/,
    );
    // a rewrite would make every row look just written (its version is its xmin's commit)
    await vl.client.query('create domain small as int check (value < 10)');
    expect(await refused('alter table t add column s small')).toMatch(
      /refuses to rewrite t \(a new column of a domain with constraints.*\| add the column as the base type with a CHECK constraint/,
    );
    expect(await refused('create table copy as select * from t')).toMatch(
      /refuses CREATE TABLE AS public.copy.*INSERT … SELECT/,
    );
    // the safe recipe goes through
    await vl.client.query('alter table t add column at timestamptz');
    await vl.client.query('alter table t alter column at set default now()');
    await vl.client.query('update t set at = now() where at is null');
    const dump = await waitSameSchema(pair, (d) => d.includes('at timestamp with time zone DEFAULT now()'));
    expect(dump).not.toContain('copy');
    await waitConverged(pair.sides, 't', (r) => r.length === 1 && r[0]!.includes('"at":"'));
  });

  it('pauses the origin’s stream at a DDL that fails on the peer, logs ddl_failed, lets other origins flow, and resumes once resolved', async () => {
    pair = await replicationPair('create table t (id int primary key, v text)');
    const { vl, wa } = pair;
    // an object only Wallonie has, in the way of Vlaanderen's DDL
    await wa.client.query('create table clash (x text primary key)');
    await startAll(pair);
    await vl.client.query('create table clash (id int primary key)');
    await vl.client.query(`insert into t values (1, 'behind the failed DDL')`);
    const failed = async () =>
      (
        await wa.client.query<{ n: string }>(
          `select count(*)::text as n from brabant.conflicts where kind = 'ddl_failed'`,
        )
      ).rows[0]!.n;
    const deadline = Date.now() + 60_000;
    while ((await failed()) === '0' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await failed()).toBe('1');
    // paused: the row behind it does not arrive; the other way still flows
    await wa.client.query(`insert into t values (2, 'from wallonie')`);
    await waitConverged([vl], 't', (r) => r.length === 2);
    expect((await wa.client.query('select id from t order by id')).rows).toEqual([{ id: 2 }]);
    // the operator fixes Wallonie's schema by hand and says so: skip the DDL here
    await wa.client.query('drop table clash; create table clash (id int primary key)');
    await wa.client.query(
      `insert into brabant.ddl_resolutions (source, commit_lsn, action)
         select remote_node, remote_commit_lsn, 'skip' from brabant.conflicts where kind = 'ddl_failed'`,
    );
    await waitConverged(pair.sides, 't', (r) => r.length === 2, 90_000);
    expect(await failed()).toBe('1'); // logged once, however often it was retried
  });
});

describe('DDL replication while the other region writes the old shape', () => {
  it('keeps the values of a renamed column that the other region wrote under its old name', async () => {
    pair = await replicationPair('create table t (id int primary key, a text)');
    const { vl, wa } = pair;
    // Wallonie's apply starts later, so Wallonie writes the old shape after Vlaanderen renamed the column
    await Promise.all([
      pair.capture(vl).waitForLog(/capture session starting/),
      pair.capture(wa).waitForLog(/capture session starting/),
      pair.apply(vl).waitForLog(/apply session running/),
    ]);
    await vl.client.query('alter table t rename column a to b');
    await wa.client.query(`insert into t values (1, 'written as a')`);
    await wa.client.query(`insert into t values (2, 'also a')`);
    await vl.client.query(`insert into t values (3, 'written as b')`);
    await pair.apply(wa).waitForLog(/apply session running/);
    const rows = await waitConverged(pair.sides, 't', (r) => r.length === 3);
    expect(rows).toEqual(
      [
        JSON.stringify({ b: 'written as a', id: 1 }),
        JSON.stringify({ b: 'also a', id: 2 }),
        JSON.stringify({ b: 'written as b', id: 3 }),
      ].sort(),
    );
  });

  it('ends the same on both nodes when an old-shape update is newer than a write of the new column', async () => {
    pair = await replicationPair(`create table t (id int primary key, v text);
      insert into t values (1, 'seed'), (2, 'seed')`);
    const { vl, wa } = pair;
    await Promise.all([
      pair.capture(vl).waitForLog(/capture session starting/),
      pair.capture(wa).waitForLog(/capture session starting/),
      pair.apply(vl).waitForLog(/apply session running/),
    ]);
    await vl.client.query(`alter table t add column n int default 0`);
    await vl.client.query(`update t set n = 5 where id in (1, 2)`);
    // Wallonie has not seen the column: its newer update of row 1 is in the old shape
    await wa.client.query(`update t set v = 'wa, newer' where id = 1`);
    await pair.apply(wa).waitForLog(/apply session running/);
    // row 1: the newest row wins whole, as Wallonie holds it (n as rows had it when added);
    // row 2: Vlaanderen's write of the new column, the only one
    const rows = await waitConverged(pair.sides, 't', (r) => r.some((x) => x.includes('wa, newer')));
    expect(rows).toEqual(
      [JSON.stringify({ n: 0, v: 'wa, newer', id: 1 }), JSON.stringify({ n: 5, v: 'seed', id: 2 })].sort(),
    );
  });

  it('reads a table again when it changes on this node by hand while apply holds its shape', async () => {
    pair = await replicationPair('create table t (id int primary key, a text, b text)');
    const { vl, wa } = pair;
    const vlApply = pair.apply(vl);
    await Promise.all([
      vlApply.waitForLog(/apply session running/),
      pair.apply(wa).waitForLog(/apply session running/),
      ...pair.sides.map((s) => pair!.capture(s).waitForLog(/capture session starting/)),
    ]);
    await wa.client.query(`insert into t values (1, 'a1', 'b1')`);
    await waitConverged(pair.sides, 't', (r) => r.length === 1);
    // Vlaanderen's apply has read t; a local-only DDL drops a column it knows of
    await vl.client.query(
      'begin; set local brabant.ddl_replication = off; alter table t drop column b; commit',
    );
    await vl.client.query(
      'begin; set local brabant.ddl_replication = off; alter table t add column c text; commit',
    );
    await wa.client.query(`insert into t values (2, 'a2', 'b2')`);
    await wa.client.query(`update t set a = 'a1, newer' where id = 1`);
    const rows = await waitConverged([vl], 't', (r) => r.length === 2 && r.some((x) => x.includes('newer')));
    expect(rows).toEqual(
      [
        JSON.stringify({ a: 'a1, newer', c: null, id: 1 }),
        JSON.stringify({ a: 'a2', c: null, id: 2 }),
      ].sort(),
    );
    expect(vlApply.running).toBe(true);
  });
});
