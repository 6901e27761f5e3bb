/**
 * The column types of a PostgreSQL server, read from its catalog (not listed by hand), each with
 * the values it accepts for a type test: edge values where a type's edges are known, otherwise
 * the first of a list of generic text forms the type's input function accepts, plus any value of
 * that type found in the server's own catalog. So a type nobody thought of still gets a value,
 * and one for which nothing is found is reported, not silently left out.
 */
import type pg from 'pg';

export interface TypeCase {
  /** SQL name (format_type), e.g. `timestamp with time zone`, `public.mood`. */
  sql: string;
  /** pg_type.typname, e.g. timestamptz. */
  name: string;
  typtype: string;
  /** SQL expressions of values of the type (each `'text'::type` or built by SQL), NULL not included. */
  values: string[];
  /** The array type's SQL name, when the type has one. */
  arraySql: string | undefined;
  /** A column of the type can be a PRIMARY KEY / unique index column (a default btree opclass). */
  btree: boolean;
  /** A column of the type can be compared with = (REPLICA IDENTITY FULL lookups need that). */
  equality: boolean;
  /** The type's input refuses its own output (pg_node_tree): its values are copies from the catalog, no node takes them as sent. */
  noInput: boolean;
}

/** Edge values by typname: the ends of each range, specials, and what text forms make hard. */
const EDGES: Record<string, string[]> = {
  bool: ['t', 'f'],
  int2: ['-32768', '32767', '0'],
  int4: ['-2147483648', '2147483647', '0'],
  int8: ['-9223372036854775808', '9223372036854775807', '0'],
  float4: ['NaN', 'Infinity', '-Infinity', '-0', '0', '1.4e-45', '3.4028235e+38', '1.1', '-1.17549435e-38'],
  float8: ['NaN', 'Infinity', '-Infinity', '-0', '0', '5e-324', '1.7976931348623157e+308', '0.1'],
  numeric: [
    'NaN',
    'Infinity',
    '-Infinity',
    '0',
    '-0.001',
    '1e-1000',
    '-99999999999999999999999999999.999999999',
    '1e131071',
  ],
  money: ['-92233720368547758.08', '92233720368547758.07', '0'],
  text: ['', 'NULL', 'a,b;c{d}"e\\f g', 'héllo wörld ✓ 𝄞'],
  varchar: ['', 'NULL', 'a,b;c{d}"e\\f g'],
  bpchar: ['', 'x', ' padded '],
  name: ['', 'a"b', 'x'.repeat(63)],
  char: ['a', '\\', ''],
  bytea: ['\\x', '\\x00', '\\xdeadbeef'],
  date: [
    'infinity',
    '-infinity',
    '4713-01-01 BC',
    '0001-12-31 BC',
    '0001-01-01',
    '9999-12-31',
    '10000-01-01',
    '5874897-12-31',
    '2024-02-29',
  ],
  time: ['00:00:00', '24:00:00', '23:59:59.999999'],
  timetz: ['00:00:00+15:59', '24:00:00-15:59', '12:00:00.000001+00'],
  timestamp: [
    'infinity',
    '-infinity',
    '4713-01-01 00:00:00 BC',
    '0001-01-01 00:00:00',
    '9999-12-31 23:59:59.999999',
    '294247-01-10 04:00:54.775807',
    '294247-01-10 04:00:54.775808',
    '294276-12-31 23:59:59.999999',
    '1969-12-31 23:59:59.999999',
  ],
  timestamptz: [
    'infinity',
    '-infinity',
    '4713-01-01 00:00:00+00 BC',
    '0001-01-01 00:30:00+01',
    '9999-12-31 23:59:59.999999+00',
    '294247-01-10 04:00:54.775807+00',
    '294276-12-31 23:59:59.999999+00',
    '2026-11-26 04:02:42.123456+05:45',
  ],
  interval: ['-178000000 years', '178000000 years', '1 day -00:00:00.000001', '0'],
  uuid: ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'],
  json: ['{}', '[]', 'null', '{"b": 1,  "a": [2.5e10, "x\\u0000y"]}'],
  jsonb: ['{}', '[]', 'null', '{"b": 1, "a": [2.5e10, "x"]}'],
  jsonpath: ['$', '$.a[*] ? (@ > 1)'],
  xml: ['<a/>', '<?xml version="1.0"?><a>x&amp;y</a>', 'just text'],
  bit: ['0', '1'],
  varbit: ['', '1', '0101010101'],
  inet: ['::1', '255.255.255.255', '10.1.2.3/8', 'ffff::ffff/128'],
  cidr: ['10.0.0.0/8', '::/0'],
  macaddr: ['08:00:2b:01:02:03', 'ff:ff:ff:ff:ff:ff'],
  macaddr8: ['08:00:2b:01:02:03:04:05'],
  point: ['(0,0)', '(-0,1e+308)', '(NaN,Infinity)'],
  line: ['{1,-1,0}'],
  lseg: ['[(0,0),(1,1)]'],
  box: ['(1,1),(0,0)', '(-0,-0),(-0,-0)'],
  path: ['[(0,0),(1,1)]', '((0,0),(1,1),(2,0))'],
  polygon: ['((0,0),(1,1),(2,0))'],
  circle: ['<(0,0),1>', '<(1e-300,0),0>'],
  tsvector: ["'a' 'b':1A,2", ''],
  tsquery: ["'a' & !'b' | 'c':*"],
  pg_lsn: ['0/0', 'FFFFFFFF/FFFFFFFF'],
  oid: ['0', '4294967295'],
  xid: ['0', '4294967295'],
  xid8: ['0', '18446744073709551615'],
  cid: ['0', '4294967295'],
  tid: ['(0,0)', '(4294967295,65535)'],
  int2vector: ['', '1 2 -3'],
  oidvector: ['', '1 4294967295'],
};

/** Values a text literal cannot spell, as SQL: every character, every byte, and values large enough to be TOASTed out of line. */
export function builtValues(hugeBytes: number): Record<string, string[]> {
  // md5 hex is hardly compressible: the value stays large, so it is stored out of line (TOAST)
  const hugeText = `(select string_agg(md5(g::text), '') from generate_series(1, ${Math.ceil(hugeBytes / 32)}) g)`;
  return {
    text: [`(select string_agg(chr(g), '') from generate_series(1, 255) g)`, hugeText],
    bytea: [
      `(select decode(string_agg(lpad(to_hex(g), 2, '0'), ''), 'hex') from generate_series(0, 255) g)`,
      `decode(${hugeText}, 'hex')`,
    ],
  };
}

/** Text forms tried, in order, on a type without edge values: the first its input accepts is used. */
const GENERIC = [
  '0',
  '1',
  '',
  'a',
  't',
  '(0,0)',
  '(1,1),(0,0)',
  '<(0,0),1>',
  '{}',
  'empty',
  '(,)',
  '{(,)}',
  '0/0',
  '00:00:00',
  '2000-01-01',
  '127.0.0.1',
  '1 day',
  '10:20:10,14,15',
  'pg_catalog',
  'integer',
  'english',
  'simple',
  'postgres',
  'default',
  '=(integer,integer)',
  'int4pl',
  'int4pl(integer,integer)',
  'postgres=arwdDxt/postgres',
];

export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * Every type a column can have in the given schemas: base types (not array types themselves),
 * ranges and multiranges, enums, composites and domains; each with its values.
 */
export async function typeCases(
  db: pg.Client,
  schemas: string[],
  built: Record<string, string[]> = {},
): Promise<{ cases: TypeCase[]; noValue: string[] }> {
  const types = await db.query<{
    oid: number;
    sql: string;
    name: string;
    typtype: string;
    arr: string | null;
  }>(
    `select t.oid::int as oid, format_type(t.oid, null) as sql, t.typname as name, t.typtype::text as typtype,
            case when t.typarray <> 0 then format_type(t.typarray, null) end as arr
       from pg_type t join pg_namespace n on n.oid = t.typnamespace
      where n.nspname = any($1) and t.typisdefined and t.typtype in ('b', 'r', 'm', 'e', 'c', 'd')
        and not exists (select 1 from pg_type e where e.typarray = t.oid)
        and (t.typtype <> 'c' or exists (select 1 from pg_class c where c.oid = t.typrelid and c.relkind = 'c'))
      order by n.nspname, t.typname`,
    [schemas],
  );
  const cases: TypeCase[] = [];
  const noValue: string[] = [];
  await db.query('begin');
  try {
    for (const t of types.rows) {
      if (!(await accepts(db, `create temp table probe_column (c ${t.sql}) `))) continue;
      const values: string[] = [];
      for (const text of EDGES[t.name] ?? []) {
        const expr = `${literal(text)}::${t.sql}`;
        if (!(await accepts(db, `select ${expr}`)))
          throw new Error(`edge value ${expr} is not accepted: fix EDGES`);
        values.push(expr);
      }
      values.push(...(built[t.name] ?? []));
      if (values.length === 0) {
        for (const text of GENERIC) {
          const expr = `${literal(text)}::${t.sql}`;
          if (await accepts(db, `select ${expr}`)) {
            values.push(expr);
            break;
          }
        }
      }
      const copied = await catalogValues(db, t.oid, t.sql);
      values.push(...copied.values);
      if (values.length === 0) noValue.push(t.sql);
      cases.push({
        sql: t.sql,
        name: t.name,
        typtype: t.typtype,
        values: [...new Set(values)],
        arraySql: t.arr ?? undefined,
        btree: await accepts(db, `create temp table probe_key (c ${t.sql} primary key) `),
        equality: await accepts(db, `select null::${t.sql} = null::${t.sql}`),
        noInput: copied.noInput,
      });
    }
  } finally {
    await db.query('rollback');
  }
  return { cases, noValue };
}

/** Whether a statement runs (in a savepoint, rolled back: a probe leaves nothing behind). */
async function accepts(db: pg.Client, sql: string): Promise<boolean> {
  await db.query('savepoint probe');
  try {
    await db.query(sql);
    return true;
  } catch {
    return false;
  } finally {
    await db.query('rollback to savepoint probe');
  }
}

/** One value of the type from a system catalog column of that type, as its text form, if any (and if it reads back). */
async function catalogValues(
  db: pg.Client,
  oid: number,
  sql: string,
): Promise<{ values: string[]; noInput: boolean }> {
  const cols = await db.query<{ rel: string; att: string }>(
    `select format('%I.%I', n.nspname, c.relname) as rel, quote_ident(a.attname) as att
       from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
      where a.atttypid = $1 and c.relkind = 'r' and n.nspname = 'pg_catalog' and a.attnum > 0 and not a.attisdropped
      limit 3`,
    [oid],
  );
  for (const c of cols.rows) {
    const v = await db.query<{ t: string }>(
      `select ${c.att}::text as t from ${c.rel} where ${c.att} is not null limit 1`,
    );
    const text = v.rows[0]?.t;
    if (text === undefined) continue;
    const expr = `${literal(text)}::${sql}`;
    if (await accepts(db, `select ${expr}`)) return { values: [expr], noInput: false };
    // A type whose input refuses every text (pg_node_tree, …): its values exist only as copies.
    return {
      values: [`(select ${c.att} from ${c.rel} where ${c.att} is not null limit 1)`],
      noInput: true,
    };
  }
  return { values: [], noInput: false };
}
