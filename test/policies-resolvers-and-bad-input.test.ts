/**
 * Conflict policies per conflict kind and custom resolvers, set with `brabant policy set` on one
 * node and in force on the other at that place of the stream; bad policies refused with the object
 * and the fix, nothing changed; a custom resolver that raises or returns what is not a row sends
 * its change to the dead-letter topic and the stream goes on.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readApplyDeadLetters } from './support/changes.ts';
import { brabant } from './support/cli.ts';
import { type Pair, replicationPair, tableRows, waitConverged } from './support/pair.ts';
import { region, stack } from './support/stack.ts';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

/** The CLI against the test stack, in this test's databases. */
function policy(p: Pair, args: string[]) {
  const db = new URL(p.vl.url).pathname.slice(1);
  return brabant(['policy', ...args, '--database', db, '--timeout', '60'], {
    ...process.env,
    BRABANT_HOME: stack().workDir,
  });
}

const TABLES = `
  create table c (id int primary key, v text, n int, label text);
  create table k (id int primary key, v text);
  create table bad (id int primary key, v text);
  create function public.longer(kind text, l jsonb, r jsonb, lv jsonb, rv jsonb) returns jsonb
    language sql as $$ select case when length(r ->> 'v') > length(l ->> 'v') then r end $$;
  create function public.fails(kind text, l jsonb, r jsonb, lv jsonb, rv jsonb) returns jsonb
    language plpgsql as $$ begin
      if r ->> 'v' = 'raise' then raise exception 'the resolver refuses %', r ->> 'id'; end if;
      return '"not a row"'::jsonb;
    end $$;
  create function public.text_result(kind text, l jsonb, r jsonb, lv jsonb, rv jsonb) returns text
    language sql as $$ select 'x' $$;`;

describe('conflict policies', () => {
  it('refuses a bad policy naming the object and the fix, and changes nothing', async () => {
    pair = await replicationPair(TABLES);
    await pair.capture(pair.vl).waitForLog(/capture session starting/);
    const refused = async (args: string[], message: RegExp) => {
      const r = await policy(pair!, ['set', '--node', 'vl-1', ...args]);
      expect(r.code, r.out).toBe(1);
      expect(r.out).toMatch(message);
    };
    await refused(['nosuch', 'row_lww'], /POLICY_INVALID: no table nosuch on vl-1: .*does not exist/);
    await refused(['c', 'delta', '--columns', 'nosuch'], /table public.c has no column nosuch/);
    await refused(['c', 'delta', '--columns', 'label'], /delta column public.c.label is text, not a number/);
    await refused(['c', 'delta', '--columns', 'id'], /delta column public.c.id is part of the primary key/);
    await refused(['c', 'delta'], /policy delta of public.c needs its columns/);
    await refused(['c', 'column_lww', '--columns', 'v'], /policy column_lww applies to the whole table/);
    await refused(
      ['c', 'update_missing:bogus'],
      /update_missing cannot be resolved with bogus on public.c: choose one of insert_or_skip, skip/,
    );
    await refused(['c', 'nonsense:skip'], /no conflict kind nonsense to resolve on public.c/);
    await refused(['c', 'lww'], /no conflict policy lww: the policies are row_lww, column_lww/);
    await refused(
      ['c', 'custom:public.nosuch'],
      /no function public.nosuch\(text, jsonb, jsonb, jsonb, jsonb\): create it first/,
    );
    await refused(['c', 'custom:public.text_result'], /must return jsonb/);
    await refused([], /give the table and the policy/);
    const show = await policy(pair, ['show', '--node', 'vl-1']);
    expect(show.code, show.out).toBe(0);
    for (const t of ['public.bad', 'public.c', 'public.k'])
      expect(show.out).toMatch(new RegExp(`${t} +row_lww\\n`));
    const ident = await pair.vl.client.query(`select relreplident from pg_class where relname = 'c'`);
    expect(ident.rows[0].relreplident).toBe('d'); // no policy that needs the old row was taken
  });

  it('resolves each conflict kind as declared, from the policy’s place in the stream on; custom resolvers decide, and one that fails dead-letters only its change', async () => {
    pair = await replicationPair(TABLES);
    const { vl, wa } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    let apply = pair.apply(wa);
    await apply.waitForLog(/apply session running/);
    await vl.client.query(`insert into c select g, 'seed', 0, 'x' from generate_series(1, 20) g`);
    await vl.client.query(`insert into k values (1, 'seed'), (2, 'seed')`);
    await vl.client.query(`insert into bad values (1, 'seed'), (2, 'seed'), (3, 'seed')`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 20);
    await waitConverged(pair.sides, 'bad', (r) => r.length === 3);

    const set = await policy(pair, ['set', '--node', 'vl-1', 'public.k', 'custom:public.longer']);
    expect(set.code, set.out).toBe(0);
    expect(set.out).toMatch(
      /set on vl-1: row_lww, custom public\.longer\(.*\); waiting until every other node has it/,
    );
    expect(set.out).toMatch(/in force on every node \(vl-1, wa-1\)/);
    expect((await policy(pair, ['set', '--node', 'vl-1', 'bad', 'custom:public.fails'])).code).toBe(0);
    expect((await policy(pair, ['set', '--node', 'vl-1', 'c', 'delete_recently_updated:delete'])).code).toBe(
      0,
    );
    const shown = await policy(pair, ['show', '--node', 'wa-1', 'c']);
    expect(shown.out).toMatch(/public.c +row_lww, delete_recently_updated: delete\n/);

    // Wallonie's apply away: each pair of writes ordered on purpose (the first older)
    await apply.kill('SIGTERM');
    // update_missing before the policy below: the default, insert the newer update's row
    await wa.client.query('delete from c where id = 1');
    await vl.client.query(`update c set v = 'vl newer' where id = 1`);
    await vl.client.query(`select brabant.set_conflict_policy('c', 'update_missing:skip')`);
    // update_missing after it: skipped
    await wa.client.query('delete from c where id = 2');
    await vl.client.query(`update c set v = 'vl newer' where id = 2`);
    // delete_recently_updated: the older delete still deletes
    await vl.client.query('delete from c where id = 3');
    await wa.client.query(`update c set v = 'wa newer' where id = 3`);
    // update_origin_change on k: the longer value wins whatever its time (the custom resolver)
    await wa.client.query(`update k set v = 'wa, older but longer' where id = 1`);
    await vl.client.query(`update k set v = 'vl newer' where id = 1`);
    await wa.client.query(`update k set v = 'wa' where id = 2`);
    await vl.client.query(`update k set v = 'vl, newer and longer' where id = 2`);
    // the custom resolver of bad raises, then returns what is not a row: both dead letters
    await wa.client.query(`update bad set v = 'wa' where id in (1, 2, 3)`);
    await vl.client.query(`update bad set v = 'raise' where id = 1`);
    await vl.client.query(
      `begin; update bad set v = 'not a row' where id = 2; insert into c values (50, 'same tx', 0, 'x'); commit`,
    );
    await vl.client.query(`insert into c values (99, 'after everything', 0, 'x')`);

    apply = pair.apply(wa);
    await apply.waitForLog(/apply session running/);
    const rows = await waitConverged([wa], 'c', (r) => r.some((x) => x.includes('"id":99')));
    const byId = new Map(rows.map((x) => [JSON.parse(x).id as number, JSON.parse(x)]));
    expect(byId.get(1)?.v).toBe('vl newer'); // before the policy: inserted
    expect(byId.has(2)).toBe(false); // after it: skipped
    expect(byId.has(3)).toBe(false); // the delete won over the newer update
    expect(byId.get(50)?.v).toBe('same tx'); // the rest of the dead-lettered change's transaction
    const k = await tableRows(wa.client, 'k');
    expect(k.map((x) => JSON.parse(x).v).sort()).toEqual(['vl, newer and longer', 'wa, older but longer']);
    const b = await tableRows(wa.client, 'bad');
    expect(b.map((x) => JSON.parse(x).v).sort()).toEqual(['wa', 'wa', 'wa']);

    const logged = await wa.client.query<{
      kind: string;
      resolution: string;
      policy: string;
      key: { id: string };
    }>(
      `select kind, resolution, policy, key from brabant.conflicts where table_name in ('public.c', 'public.k') order by id`,
    );
    expect(logged.rows.map((r) => [r.kind, r.resolution, r.policy, r.key.id])).toEqual([
      ['update_missing', 'apply_remote', 'row_lww', '1'],
      ['update_missing', 'skip', 'update_missing:skip', '2'],
      ['delete_recently_updated', 'apply_remote', 'delete_recently_updated:delete', '3'],
      ['update_origin_change', 'custom', 'custom:public.longer(text,jsonb,jsonb,jsonb,jsonb)', '1'],
      ['update_origin_change', 'custom', 'custom:public.longer(text,jsonb,jsonb,jsonb,jsonb)', '2'],
    ]);
    const letters = await readApplyDeadLetters(
      region('vlaanderen').kafkaBrokers,
      wa.names.nodeId,
      (l) => l.filter((x) => x.body.table === 'bad').length >= 2,
    );
    const reasons = letters.filter((x) => x.body.table === 'bad').map((x) => x.headers['brabant.reason']);
    expect(reasons).toEqual([
      expect.stringMatching(/the resolver refuses 1/),
      expect.stringMatching(/cannot call populate_composite on a scalar/),
    ]);
  });
});
