/**
 * What `brabant resync` sends to the node, and how it reports (pure): the statements that read a
 * chunk and write it into the node's WAL as a high watermark, the low watermark before it, which
 * tables can be resynced, the progress line, and what a failure of the node means for the
 * operator. The command (resync.ts) runs them.
 *
 * A chunk is `chunkRows` rows of one table in key order after the last key of the chunk before
 * (its key columns' text forms, cast back to their types), or as many of its remembered deletes
 * (brabant.tombstones, in key order) whose key holds no row now. It is read and written into the
 * WAL by one statement, in one transaction: everything its snapshot sees committed before the
 * high watermark, and what it does not see commits after the low one, inside the window capture
 * watches (services/capture/resync-window.ts). Values are the output functions' text forms
 * (`format('%s')`, not `::text`, which differs for bool, inet or char(n)) under the session
 * settings of the replication connection, so they read as pgoutput's own; each row carries its
 * version: the one a resync recorded for it (brabant.resynced_versions), else its xmin's commit
 * time and origin.
 */
import { RESYNC_HIGH_PREFIX, RESYNC_LOW_PREFIX, type ResyncColumn } from '../protocol/resync.ts';
import { BrabantError } from '../runtime/errors.ts';
import { SQLSTATE } from '../runtime/sqlstate.ts';

export interface ResyncColumnInfo extends ResyncColumn {
  /** format_type(): what a key's text form is cast back to. */
  sqlType: string;
}

export interface ResyncTable {
  schema: string;
  name: string;
  columns: ResyncColumnInfo[];
  /** The columns rows are chunked by and found by on the peers (the primary key, or the replica identity index). */
  keyCols: string[];
}

/** What the catalog says of a table (resync.ts reads it). */
export interface TableFacts {
  schema: string;
  name: string;
  relkind: string;
  /** relreplident: d default, n nothing, f full, i index. */
  replicaIdentity: string;
  primaryKey: string[];
  /** Columns of the replica identity index (REPLICA IDENTITY USING INDEX). */
  identityIndex: string[];
  columns: Omit<ResyncColumnInfo, 'key'>[];
  published: boolean;
  /** Its conflict policy is not the default (row_lww alone): what it is, for the message. */
  policy: string | undefined;
}

const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** The table as resync reads it, or why it cannot be resynced (with what to do). */
export function resyncable(f: TableFacts): { table: ResyncTable } | { refused: string } {
  const name = `${f.schema}.${f.name}`;
  if (f.relkind === 'p')
    return {
      refused: `${name} is partitioned: resync its partitions instead (brabant resync NODE --table <partition>)`,
    };
  if (!f.published)
    return { refused: `${name} is in no publication of this node: capture does not replicate it` };
  const flagged =
    f.replicaIdentity === 'f'
      ? f.columns.map((c) => c.name)
      : f.replicaIdentity === 'i'
        ? f.identityIndex
        : f.replicaIdentity === 'd'
          ? f.primaryKey
          : [];
  // as apply finds rows: by the primary key when the stream's key holds it, else by that key
  const keyCols =
    f.primaryKey.length > 0 && f.primaryKey.every((k) => flagged.includes(k))
      ? f.primaryKey
      : f.replicaIdentity === 'i'
        ? f.identityIndex
        : [];
  if (keyCols.length === 0)
    return {
      refused:
        `${name} has no primary key or replica identity index to find its rows by on the peers: a resync could only ` +
        'add copies of its rows there; add a primary key to resync it',
    };
  if (f.policy !== undefined)
    return {
      refused:
        `${name} has conflict policy ${f.policy}: a resync carries each row's version, not its columns' versions or ` +
        'increments, so it is refused for tables whose policy is not row_lww',
    };
  return {
    table: {
      schema: f.schema,
      name: f.name,
      columns: f.columns.map((c) => ({ ...c, key: flagged.includes(c.name) })),
      keyCols,
    },
  };
}

/** The low watermark of chunk `chunk` (its own transaction, before the chunk is read). */
export function lowWatermarkSql(): string {
  return `select pg_logical_emit_message(true, ${lit(RESYNC_LOW_PREFIX)}, $1::text)::text as lsn`;
}

export function lowContent(resync: string, t: ResyncTable, chunk: number): string {
  return JSON.stringify({ resync, schema: t.schema, name: t.name, chunk });
}

/** The high watermark's fixed part ($4 of the chunk statements): everything but its rows. */
export function highHeader(resync: string, t: ResyncTable, chunk: number, kind: 'rows' | 'tombstones') {
  return JSON.stringify({
    resync,
    schema: t.schema,
    name: t.name,
    chunk,
    kind,
    columns: t.columns.map(({ name, typeOid, typeMod, key }) => ({ name, typeOid, typeMod, key })),
  });
}

const textOf = (expr: string) => `case when ${expr} is null then null else format('%s', ${expr}) end`;
const micros = (ts: string) => `(extract(epoch from ${ts}) * 1000000)::int8::text`;

/** A version: the one a resync recorded (`e`), else the commit time and origin of xmin `x`. */
function versionOf(x: string): { ts: string; origin: string; joins: string } {
  return {
    ts: `case when e.tbl is not null then e.ts::text else ${micros('o."timestamp"')} end`,
    origin: 'case when e.tbl is not null then e.origin else n.roname::text end',
    joins: `left join lateral pg_xact_commit_timestamp_origin(${x}) o on true
      left join pg_replication_origin n on n.roident = o.roident`,
  };
}

/** The end of a chunk statement: the high watermark written with the chunk's rows, how many, and the last key. */
function emitHigh(): string {
  return `, high as (
    select pg_logical_emit_message(true, ${lit(RESYNC_HIGH_PREFIX)},
             jsonb_set($4::jsonb, '{rows}', coalesce(jsonb_agg(c.entry order by c.ord), '[]'::jsonb))::text) as lsn
      from chunk c
  )
  select (select count(*) from chunk)::int as n,
         (select c.last_key from chunk c order by c.ord desc limit 1) as last_key,
         (select lsn::text from high) as lsn`;
}

/**
 * Reads the next chunk of rows and writes it as a high watermark: $1 the last key of the chunk
 * before (text forms; omitted for the first chunk), $2 the chunk size, $3 the table as
 * tombstones and recorded versions name it, $4 the high watermark's fixed part (highHeader).
 */
export function rowsChunkSql(t: ResyncTable, first: boolean): string {
  const table = `${q(t.schema)}.${q(t.name)}`;
  const keys = t.keyCols.map((k) => `t.${q(k)}`);
  const keyJson = `jsonb_build_object(${t.keyCols.map((k) => `${lit(k)}, t.${q(k)}`).join(', ')})`;
  const types = new Map(t.columns.map((c) => [c.name, c.sqlType]));
  // $1 is typed even when unused (an untyped parameter PostgreSQL cannot infer is refused)
  const after = first
    ? 'cardinality($1::text[]) = 0'
    : `(${keys.join(', ')}) > (${t.keyCols.map((k, i) => `($1::text[])[${i + 1}]::${types.get(k)}`).join(', ')})`;
  const v = versionOf('t.xmin');
  return `with chunk as (
    select row_number() over (order by ${keys.join(', ')}) as ord,
           array[${t.keyCols.map((k) => `format('%s', t.${q(k)})`).join(', ')}] as last_key,
           jsonb_build_array(${v.ts}, ${v.origin}, ${t.columns.map((c) => textOf(`t.${q(c.name)}`)).join(', ')}) as entry
      from ${table} t
      left join brabant.resynced_versions e
        on e.tbl = $3 and e.kind = 'row' and e.key = ${keyJson} and e.row_xmin = t.xmin
      ${v.joins}
     where ${after}
     order by ${keys.join(', ')}
     limit $2
  )${emitHigh()}`;
}

/**
 * Reads the next chunk of remembered deletes whose key holds no row now (a row there carries the
 * newer state) and writes it as a high watermark: parameters as rowsChunkSql, $1 the last
 * tombstone key (jsonb text).
 */
export function tombstonesChunkSql(t: ResyncTable, first: boolean): string {
  const table = `${q(t.schema)}.${q(t.name)}`;
  const v = versionOf('tb.xmin');
  const keyCols = t.columns.filter((c) => c.key);
  return `with chunk as (
    select row_number() over (order by tb.key) as ord,
           array[tb.key::text] as last_key,
           jsonb_build_array(${v.ts}, ${v.origin}, ${keyCols.map((c) => textOf(`r.${q(c.name)}`)).join(', ')}) as entry
      from brabant.tombstones tb
      cross join lateral jsonb_populate_record(null::${table}, tb.key) r
      left join brabant.resynced_versions e
        on e.tbl = tb.tbl and e.kind = 'tombstone' and e.key = tb.key and e.row_xmin = tb.xmin
      ${v.joins}
     where tb.tbl = $3 and ${first ? 'cardinality($1::text[]) = 0' : 'tb.key > ($1::text[])[1]::jsonb'}
       and not exists (select 1 from ${table} x where ${t.keyCols.map((k) => `x.${q(k)} = r.${q(k)}`).join(' and ')})
     order by tb.key
     limit $2
  )${emitHigh()}`;
}

/** Where the next chunk starts: a table, rows or remembered deletes, after a key (null: from the start). */
export interface Cursor {
  ti: number;
  phase: 'rows' | 'tombstones';
  key: string[] | null;
}

/** The cursor after a chunk of `n` rows from `c` (fewer than a chunk: that part of the table is done). */
export function nextCursor(c: Cursor, n: number, chunkRows: number, lastKey: string[] | null): Cursor {
  if (n >= chunkRows) return { ...c, key: lastKey };
  return c.phase === 'rows'
    ? { ti: c.ti, phase: 'tombstones', key: null }
    : { ti: c.ti + 1, phase: 'rows', key: null };
}

export interface Progress {
  tables: number;
  tablesDone: number;
  chunks: number;
  rows: number;
  tombstones: number;
  /** Rows and remembered deletes the tables hold, as estimated at the start. */
  estimate: number;
  /** Of `rows` and `tombstones`, those an earlier run of the command wrote (a resumed resync). */
  doneBefore: number;
  /** Since this run of the command started. */
  elapsedMs: number;
}

/** `tables 1/3, chunks 12, rows 12,000 (+40 deletes), 4,100 rows/s, ETA 7 s`. */
export function progressLine(p: Progress): string {
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const done = p.rows + p.tombstones;
  const rate = p.elapsedMs > 0 ? ((done - p.doneBefore) * 1000) / p.elapsedMs : 0;
  const left = Math.max(0, p.estimate - done);
  const eta = rate > 0 ? `ETA ${formatSeconds(left / rate)}` : 'ETA unknown';
  return (
    `tables ${p.tablesDone}/${p.tables}, chunks ${n(p.chunks)}, rows ${n(p.rows)}` +
    `${p.tombstones > 0 ? ` (+${n(p.tombstones)} deletes)` : ''}, ${n(rate)} rows/s, ${p.tablesDone === p.tables ? 'done' : eta}`
  );
}

function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.ceil((s % 3600) / 60)} min`;
}

/** The chunk size option. */
export function chunkRowsOf(text: string | undefined): number {
  const n = Number(text ?? 1000);
  if (!Number.isInteger(n) || n < 1 || n > 100_000)
    throw new BrabantError(
      'CONFIG_INVALID',
      `--chunk-rows must be a whole number from 1 to 100000, not '${text}'`,
    );
  return n;
}

/** A failure of the node's connection or statements as a typed error with what to do (a Brabant error as it is). */
export function explainFailure(err: unknown, node: string): unknown {
  if (err instanceof BrabantError || !(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  const again = 'run the same command again: it goes on after the last chunk written';
  if (code === SQLSTATE.INSUFFICIENT_PRIVILEGE)
    return new BrabantError(
      'PERMISSION_DENIED',
      `node ${node} refused the resync: ${err.message}; its role must read the tables, write brabant.resyncs and ` +
        `call pg_logical_emit_message (connect as the role capture uses), then ${again}`,
      { cause: err },
    );
  if (code === SQLSTATE.UNDEFINED_TABLE || code === SQLSTATE.UNDEFINED_COLUMN)
    return new BrabantError(
      'CONFIG_INVALID',
      `a table of the resync changed on node ${node} while it ran (${err.message}): run brabant resync again for ` +
        'the tables as they are now',
      { cause: err },
    );
  // a server's connection or operator SQLSTATE, a socket error, or pg's own word for a closed connection
  const lost =
    typeof code === 'string'
      ? code.startsWith('08') || code.startsWith('57') || /^E[A-Z]+$/.test(code)
      : /Connection terminated|connection is closed/i.test(err.message);
  if (lost)
    return new BrabantError(
      'SOURCE_UNAVAILABLE',
      `lost node ${node} during the resync (${err.message}): ${again}`,
      {
        cause: err,
      },
    );
  return new BrabantError(
    'INTERNAL_ERROR',
    `the resync of node ${node} failed (${typeof code === 'string' ? `SQLSTATE ${code}: ` : ''}${err.message}); ` +
      `report it with this message, or ${again}`,
    { cause: err },
  );
}
