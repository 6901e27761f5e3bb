/**
 * Every column type of the PostgreSQL server replicates exactly and is readable by a standard
 * Kafka client. The types come from the catalog (support/type-catalog.ts): every base type a
 * column can have, ranges and multiranges, an enum, a composite, a user range, a domain over each
 * type and arrays of all of them, with edge values (NULLs, the ends of each range, ±infinity, NaN,
 * -0, empty, multi-dimensional and explicitly bounded arrays, every byte and character, values
 * TOASTed out of line and over Kafka's 1 MB record limit, unchanged TOAST in updates), in key and
 * non-key columns, under PRIMARY KEY, REPLICA IDENTITY FULL and REPLICA IDENTITY USING INDEX, and
 * in a table without replica identity (insert-only).
 *
 * Written on vl-1 by capture; then (1) every record of the topic is decoded by Confluent's Python
 * client (AvroDeserializer over fastavro), and (2) apply on wa-1 must hold every row identical as
 * `t::text`. BRABANT_FIDELITY_LARGE=1 runs with larger TOASTed values (BRABANT_FIDELITY_HUGE_MB,
 * default 20) and every row written ten times over.
 */
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric } from './support/changes.ts';
import { type Pair, replicationPair, type Side, tableRows } from './support/pair.ts';
import { createDatabase, node, region, stack } from './support/stack.ts';
import { builtValues, type TypeCase, typeCases } from './support/type-catalog.ts';

const LARGE = process.env.BRABANT_FIDELITY_LARGE === '1';
const HUGE_BYTES = (LARGE ? Number(process.env.BRABANT_FIDELITY_HUGE_MB ?? 20) : 3) * 1024 * 1024;
const REPEAT = LARGE ? 10 : 1;
/** To look at a part (e.g. `_pk$` or `nokey`) while mending one: a regular expression on table names. */
const ONLY = process.env.BRABANT_FIDELITY_TABLES
  ? new RegExp(process.env.BRABANT_FIDELITY_TABLES)
  : undefined;

/** Types of the test's own: an enum, a composite (of an enum and an array), a range over float8 (and its multirange). */
const USER_TYPES = `
  create type fid_mood as enum ('sad', 'ok', 'happy', 'NULL', 'with space');
  create type fid_pair as (a int, b text, c fid_mood, d numeric[]);
  create type fid_floatrange as range (subtype = float8);`;
const USER_VALUES: Record<string, string[]> = {
  fid_mood: ["'sad'::fid_mood", "'NULL'::fid_mood", "'with space'::fid_mood"],
  fid_pair: [
    `'(1,x,ok,"{1.5,NaN}")'::fid_pair`,
    "'(,,,)'::fid_pair",
    `row(-1, 'a,b\\"c', 'happy', '{}')::fid_pair`,
  ],
  fid_floatrange: [
    "'empty'::fid_floatrange",
    "'(,)'::fid_floatrange",
    "'[-Infinity,NaN]'::fid_floatrange",
    "'(-0,1.5]'::fid_floatrange",
  ],
};

/** Types whose input function refuses every text form: their only values are copies from the catalog. */
const NO_TEXT_INPUT = [
  'gtsvector',
  'pg_brin_bloom_summary',
  'pg_brin_minmax_multi_summary',
  'pg_dependencies',
  'pg_mcv_list',
  'pg_ndistinct',
];

interface Table {
  name: string;
  type: string;
  identity: 'primary key' | 'replica identity full' | 'replica identity using index' | 'no replica identity';
  create: string;
  writes: string[];
  /** Values only copied from the catalog (pg_node_tree): no node can take them as input. */
  copiesOnly?: boolean;
}

const ident = (i: number, kind: string) => `t${String(i).padStart(3, '0')}_${kind}`;

/** One array value per row: empty, with a NULL, two-dimensional, explicit bounds, one element. */
function arrayValue(c: TypeCase, r: number): string {
  // the huge values go in one column of one row each, not copied into arrays
  const small = c.values.filter((v) => !v.includes('md5('));
  const [a, b] = [small[0] ?? 'null', small[small.length - 1] ?? 'null'];
  const arr = `${c.arraySql}`;
  switch (r) {
    case 0:
      return `'{}'::${arr}`;
    case 1:
      return `array[${a}, null, ${b}]::${arr}`;
    case 2:
      return `array[[${a}, ${b}], [${b}, ${a}]]::${arr}`;
    case 3:
      return `('[-1:0]=' || (array[${a}, ${b}]::${arr})::text)::${arr}`;
    default:
      return `array[${small[r % small.length] ?? 'null'}]::${arr}`;
  }
}

function tablesFor(c: TypeCase, i: number, domain: string | undefined): Table[] {
  const n = c.values.length;
  const arr = c.arraySql;
  const cols = [`v ${c.sql}`, ...(arr ? [`a ${arr}`] : []), ...(domain ? [`d ${domain}`] : [])];
  const row = (r: number) =>
    r >= n
      ? cols.map(() => 'null')
      : [c.values[r]!, ...(arr ? [arrayValue(c, r)] : []), ...(domain ? [`${c.values[r]}::${domain}`] : [])];
  const rows = Array.from({ length: n + 1 }, (_, r) => r);
  const tables: Table[] = [];
  const pk = ident(i, 'pk');
  tables.push({
    name: pk,
    type: c.sql,
    identity: 'primary key',
    create: `create table ${pk} (id int primary key, ${cols.join(', ')})`,
    writes: [
      `insert into ${pk} values ${rows.map((r) => `(${r}, ${row(r).join(', ')})`).join(', ')}`,
      `update ${pk} set id = id + 1000 where id = 0`,
      // an update that leaves the values alone: one TOASTed out of line (the last) arrives as unchanged
      `update ${pk} set id = id where id = ${n - 1}`,
      ...(arr ? [`update ${pk} set a = null where id = 1`] : [`update ${pk} set id = -1 where id = 1`]),
      `delete from ${pk} where id = ${Math.min(2, n)}`,
    ],
  });
  const full = ident(i, 'full');
  tables.push({
    name: full,
    type: c.sql,
    identity: 'replica identity full',
    create: `create table ${full} (${cols.join(', ')}); alter table ${full} replica identity full`,
    writes: [
      // the last row twice: duplicates are legitimate without a key
      `insert into ${full} values ${[...rows, 0].map((r) => `(${row(r).join(', ')})`).join(', ')}`,
      `update ${full} set v = ${c.values[n - 1]} where ctid = (select min(ctid) from ${full})`,
      `delete from ${full} where ctid = (select max(ctid) from ${full})`,
    ],
  });
  // a btree entry holds at most ~2.7 kB: the values TOASTed out of line are non-key values only
  const keys = c.values.flatMap((v, r) => (v.includes('md5(') ? [] : [r]));
  if (c.btree && keys.length > 0) {
    const keyRows = keys.map((r) => `(${c.values[r]}, ${r}, ${row(r).join(', ')})`).join(', ');
    const key = ident(i, 'key');
    tables.push({
      name: key,
      type: c.sql,
      identity: 'primary key',
      create: `create table ${key} (k ${c.sql}, rn int, ${cols.join(', ')}, primary key (k, rn))`,
      writes: [
        `insert into ${key} values ${keyRows}`,
        `update ${key} set rn = rn + 100 where rn = 0`,
        `update ${key} set v = null where rn = 1`,
        `delete from ${key} where rn = ${keys[Math.min(2, keys.length - 1)]}`,
      ],
    });
    const idx = ident(i, 'idx');
    tables.push({
      name: idx,
      type: c.sql,
      identity: 'replica identity using index',
      create:
        `create table ${idx} (k ${c.sql} not null, rn int not null, ${cols.join(', ')}); ` +
        `create unique index ${idx}_k on ${idx} (k, rn); alter table ${idx} replica identity using index ${idx}_k`,
      writes: [
        `insert into ${idx} values ${keyRows}`,
        `update ${idx} set rn = rn + 100 where rn = 0`,
        `update ${idx} set v = null where rn = 1`,
        `delete from ${idx} where rn = ${keys[Math.min(2, keys.length - 1)]}`,
      ],
    });
  }
  return tables;
}

/** A table without any replica identity: only its inserts are captured, and the application may still update it. */
function insertOnly(cases: TypeCase[]): Table {
  const cols = cases.map((c, i) => `c${i} ${c.sql}`);
  const rows = Array.from(
    { length: 3 },
    (_, r) => `(${cases.map((c) => c.values[r % c.values.length]).join(', ')})`,
  );
  return {
    name: 'nokey',
    type: 'every base type',
    identity: 'no replica identity',
    create: `create table nokey (${cols.join(', ')})`,
    writes: [`insert into nokey values ${rows.join(', ')}, ${rows[0]}`],
  };
}

let pair: Pair;
let tables: Table[] = [];
let cases: TypeCase[] = [];
let noValue: string[] = [];

beforeAll(async () => {
  // Read the catalog of the server the test runs on, with the test's own types defined.
  const scratch = await createDatabase(node('vl-1'), 'fidcat');
  const db = new pg.Client({ connectionString: scratch.url });
  await db.connect();
  try {
    await db.query(USER_TYPES);
    const found = await typeCases(db, ['pg_catalog', 'public'], {
      ...builtValues(HUGE_BYTES),
      ...USER_VALUES,
    });
    noValue = found.noValue;
    cases = found.cases;
    // a domain over every type that takes one (and arrays of those domains through `d`'s array)
    const domains = new Map<string, string>();
    for (const [i, c] of cases.entries()) {
      const name = `fid_d${i}`;
      try {
        await db.query(`create domain ${name} as ${c.sql}`);
        domains.set(c.sql, name);
      } catch {
        /* a type a domain cannot be over: its column is left out */
      }
    }
    const usable = cases.filter((c) => c.values.length > 0);
    tables = usable.flatMap((c, i) =>
      tablesFor(c, i, domains.get(c.sql)).map((t) => ({
        ...t,
        copiesOnly: c.noInput,
      })),
    );
    tables.push(
      insertOnly(
        usable.filter(
          (c) => !NO_TEXT_INPUT.includes(c.name) && !c.values.some((v) => v.startsWith('(select')),
        ),
      ),
    );
    if (ONLY) tables = tables.filter((t) => ONLY.test(t.name));
    const domainSql = [...domains].map(([sql, name]) => `create domain ${name} as ${sql};`).join('\n');
    pair = await replicationPair(
      `${USER_TYPES}\n${domainSql}\n${tables.map((t) => `${t.create};`).join('\n')}`,
    );
  } finally {
    await db.end();
    await scratch.drop();
  }
}, 300_000);

afterAll(async () => {
  await pair?.cleanup();
});

const brokers = () => region('vlaanderen').kafkaBrokers;

async function write(side: Side): Promise<number> {
  let statements = 0;
  for (let round = 0; round < REPEAT; round++) {
    for (const t of tables) {
      for (const w of t.writes) {
        // later rounds repeat the inserts that take the same rows again (no key to refuse them)
        const keyless = t.identity === 'replica identity full' || t.identity === 'no replica identity';
        if (round > 0 && !(keyless && w.startsWith('insert') && !w.includes('md5('))) continue;
        await side.client.query(w);
        statements++;
      }
    }
  }
  return statements;
}

/** Waits until the side's slot is confirmed past the current WAL position (all written is in Kafka). */
async function slotPast(side: Side, timeoutMs: number): Promise<void> {
  const target = (await side.client.query<{ l: string }>('select pg_current_wal_lsn()::text as l')).rows[0]!
    .l;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await side.client.query<{ done: boolean }>(
      'select confirmed_flush_lsn >= $1::pg_lsn as done from pg_replication_slots where slot_name = $2',
      [target, side.names.slot],
    );
    if (r.rows[0]?.done) return;
    if (Date.now() > deadline)
      throw new Error(`slot ${side.names.slot} did not pass ${target} within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

describe('every column type', () => {
  it('is found in the catalog with values, and each of its records is decoded by Confluent’s Python client', async () => {
    // no type is left without a value but those whose input refuses every text form
    expect(noValue.filter((t) => !NO_TEXT_INPUT.includes(t))).toEqual([]);
    const capture = pair.capture(pair.vl);
    await capture.waitForLog(/capture session starting/);
    const started = Date.now();
    const statements = await write(pair.vl);
    const wrote = Date.now();
    if (tables.some((t) => t.name === 'nokey')) {
      // the application's own update and delete of a table without replica identity work
      await pair.vl.client.query('update nokey set c0 = c0');
      await pair.vl.client.query('delete from nokey where false');
    }
    await pair.vl.client.query(`select pg_logical_emit_message(true, 'fidelity.done', 'x')`);
    // Everything is in Kafka once the slot is confirmed past the last write. (avsc with its
    // defaults, as support/topic.ts reads, refuses int8 values past 2^53: not a reader for this.)
    await slotPast(pair.vl, 240_000);
    const read = Date.now();
    const python = execFileSync('bash', ['infra/python-client.sh'], { encoding: 'utf8' }).trim();
    const out = execFileSync(
      python,
      ['test/support/python-decode.py', brokers().join(','), stack().registryUrl, pair.vl.names.topic],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    );
    const result = JSON.parse(out) as {
      records: number;
      decoded: number;
      joined: number;
      failures: unknown[];
      schemas: number;
      prefixes: string[];
    };
    const values = cases.reduce((n, c) => n + c.values.length, 0);
    console.log(
      `[fidelity] ${cases.length} types (${cases.filter((c) => c.arraySql).length} with arrays), ${values} values, ` +
        `${tables.length} tables, ${statements} statements; Python client decoded ${result.decoded} of ${result.records} ` +
        `records (${result.schemas} schemas), joined ${result.joined} split events; types without a text input: ${noValue.join(', ')}; ` +
        `write ${wrote - started} ms, capture and avsc read ${read - wrote} ms, Python ${Date.now() - read} ms`,
    );
    expect(result.failures).toEqual([]);
    expect(result.decoded).toBe(result.records);
    // the last write is there; nothing was dead-lettered (every value has a representation)
    expect(result.prefixes).toEqual(['fidelity.done']);
    // the huge text and bytea values (over Kafka's 1 MB) were split, and joined back
    if (ONLY === undefined) expect(result.joined).toBeGreaterThanOrEqual(2);
  }, 300_000);

  it('arrives identical (t::text per row) on the peer, under every replica identity', async () => {
    const apply = pair.apply(pair.wa);
    // a value no node takes as input (pg_node_tree) is dead-lettered by the peer's apply, with
    // every later change of its row: the peer holds the source's rows without one
    const rows = (side: Side, t: Table) =>
      side.client
        .query<{ r: string }>(
          `select t::text as r from ${t.name} t ${side === pair.vl && t.copiesOnly ? 'where v is null' : ''} order by 1`,
        )
        .then((r) => r.rows.map((x) => x.r));
    const pending = new Set(tables);
    const deadline = Date.now() + 120_000;
    let lastProgress = Date.now();
    while (pending.size > 0 && Date.now() < deadline && Date.now() - lastProgress < 30_000) {
      for (const t of [...pending]) {
        const [a, b] = await Promise.all([rows(pair.vl, t), rows(pair.wa, t)]);
        if (JSON.stringify(a) === JSON.stringify(b)) {
          pending.delete(t);
          lastProgress = Date.now();
        }
      }
      if (pending.size > 0) await new Promise((r) => setTimeout(r, 500));
    }
    const differing: string[] = [];
    for (const t of pending) {
      const [a, b] = await Promise.all([rows(pair.vl, t), rows(pair.wa, t)]);
      differing.push(
        `${t.name} (${t.type}, ${t.identity}): vl-1 ${a.length} rows, wa-1 ${b.length} rows; first vl-1 row ${a[0]?.slice(0, 200)}`,
      );
    }
    if (differing.length > 0)
      console.log(`[fidelity] tables not identical on wa-1:\n${differing.join('\n')}`);
    expect(differing).toEqual([]);
    for (const t of tables.filter((x) => x.copiesOnly))
      expect(
        await metric(apply, `brabant_apply_dead_letters_total{reason="row",table="public.${t.name}"}`),
      ).toBeGreaterThan(0);
    // sanity: the comparison compared something
    if (ONLY === undefined) expect((await tableRows(pair.wa.client, 'nokey')).length).toBeGreaterThan(0);
  }, 300_000);
});
