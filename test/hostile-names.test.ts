/**
 * Names nobody should choose, replicated exactly: schema, table, column and constraint names with
 * double and single quotes, semicolons, comment markers, spaces, unicode and reserved words — their
 * rows (inserts, updates, deletes from both regions) and their DDL (new columns, renames, new
 * tables, constraints and indexes), made while both regions write. Any identifier Brabant splices
 * into SQL unquoted would break here, or worse, run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, waitConverged } from './support/pair.ts';
import { schemaDump } from './support/schema.ts';

const S = '"Ünïcødé; ""schema"" -- x"';
const T = `${S}."select"`;
const U = `${S}."ta""ble'; drop table x; --"`;

const SCHEMA = `
create schema ${S};
create table ${T} (
  "id ; x" int constraint "pk""; drop" primary key,
  "from" text,
  "a""b" text constraint "chk 'x'" check ("a""b" <> 'forbidden'),
  "Ωmega 名前" text constraint "uq;1" unique,
  "col;--" int default 0
);
create table ${U} ("user" int, "order" text, "group" text, constraint "k""ey" primary key ("user", "order"));`;

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

async function sameSchema(p: Pair, check: (dump: string) => boolean, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [a, b] = p.sides.map((s) => schemaDump(s.url, [S]));
    if (a === b && check(a!)) return a!;
    if (Date.now() > deadline) throw new Error(`schemas differ:\n--- vl\n${a}\n--- wa\n${b}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('hostile names', { timeout: 180_000 }, () => {
  it('replicate rows and DDL exactly: quotes, semicolons, comment markers, unicode and reserved words', async () => {
    pair = await replicationPair(SCHEMA);
    const { vl, wa } = pair;
    await Promise.all(
      pair.sides.flatMap((s) => [
        pair!.capture(s).waitForLog(/capture session starting/),
        pair!.apply(s).waitForLog(/apply session running/),
      ]),
    );
    // rows from both regions, values as hostile as the names
    await vl.client.query(
      `insert into ${T} ("id ; x", "from", "a""b", "Ωmega 名前") select g, 'it''s; --' || g, 'q"' || g, 'ω' || g from generate_series(1, 40) g`,
    );
    await wa.client.query(
      `insert into ${T} ("id ; x", "from", "a""b", "Ωmega 名前") select g, 'wa ''' || g, 'x', 'ψ' || g from generate_series(41, 60) g`,
    );
    await vl.client.query(`insert into ${U} values (1, 'a;b', 'c"d'), (2, $$e'f$$, 'g')`);
    await waitConverged(pair.sides, T, (r) => r.length === 60);
    // the updates and deletes below find the rows on both nodes (else an update there changes nothing)
    await waitConverged(pair.sides, U, (r) => r.length === 2);
    await wa.client.query(`update ${T} set "from" = 'updated; drop', "col;--" = 7 where "id ; x" <= 10`);
    await vl.client.query(`delete from ${T} where "id ; x" > 55`);
    await wa.client.query(`update ${U} set "group" = 'moved''' where "user" = 1`);
    await vl.client.query(`delete from ${U} where "order" = $$e'f$$`);
    const rows = await waitConverged(
      pair.sides,
      T,
      (r) => r.length === 55 && r.filter((x) => x.includes('updated; drop')).length === 10,
    );
    expect(rows).toHaveLength(55);
    expect(
      await waitConverged(pair.sides, U, (r) => r.length === 1 && r[0]!.includes("moved'")),
    ).toHaveLength(1);

    // DDL with hostile names, while Wallonie goes on writing
    let writing = true;
    let written = 0;
    const w = (async () => {
      while (writing) {
        await wa.client.query(`insert into ${U} ("user", "order") values ($1, 'wa; ''w''')`, [
          1000 + written++,
        ]);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await vl.client.query(`alter table ${T} add column "new ""col""; --" text default 'd;''e'`);
    await vl.client.query(`alter table ${T} rename column "from" to "to; --"`);
    await vl.client.query(`alter table ${T} add constraint "c'1 ""x""" check ("col;--" >= 0)`);
    await vl.client.query(`create index "idx; 1 ""i""" on ${T} ("to; --", "Ωmega 名前")`);
    await vl.client.query(
      `create table ${S}."new;table ""n""" ("id" int constraint "p'k" primary key, "user" text, "ä;ö" jsonb)`,
    );
    await vl.client.query(
      `insert into ${S}."new;table ""n""" select g, 'u''' || g, jsonb_build_object('k"', g) from generate_series(1, 25) g`,
    );
    await vl.client.query(`update ${T} set "new ""col""; --" = 'set; ''there''' where "id ; x" = 1`);
    writing = false;
    await w;
    const dump = await sameSchema(
      pair,
      (d) => d.includes('new;table ""n""') && d.includes('idx; 1 ""i""') && d.includes('"to; --"'),
    );
    expect(dump).toContain(`"c'1 ""x"""`);
    expect(dump).toContain('"new ""col""; --"');
    const t = await waitConverged(pair.sides, T, (r) => r.some((x) => x.includes("set; 'there'")));
    expect(t.filter((x) => x.includes("d;'e")).length).toBe(54);
    expect(await waitConverged(pair.sides, `${S}."new;table ""n"""`, (r) => r.length === 25)).toHaveLength(
      25,
    );
    expect(await waitConverged(pair.sides, U, (r) => r.length === 1 + written)).toHaveLength(1 + written);
    // nothing went to the dead letters or paused: every conflict log entry is a resolution
    for (const s of pair.sides) {
      const failed = await s.client.query(
        "select count(*)::int as n from brabant.conflicts where kind = 'ddl_failed'",
      );
      expect(failed.rows[0].n).toBe(0);
    }
  });
});
