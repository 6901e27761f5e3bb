import { describe, expect, it } from 'vitest';
import { BrabantError } from '../runtime/errors.ts';
import {
  chunkRowsOf,
  explainFailure,
  highHeader,
  nextCursor,
  progressLine,
  resyncable,
  rowsChunkSql,
  type TableFacts,
  tombstonesChunkSql,
} from './resync-plan.ts';

const facts = (over: Partial<TableFacts> = {}): TableFacts => ({
  schema: 'public',
  name: 'orders',
  relkind: 'r',
  replicaIdentity: 'd',
  primaryKey: ['id'],
  identityIndex: [],
  columns: [
    { name: 'id', typeOid: 20, typeMod: -1, sqlType: 'bigint' },
    { name: 'note', typeOid: 25, typeMod: -1, sqlType: 'text' },
  ],
  published: true,
  policy: undefined,
  ...over,
});

describe('which tables a resync can re-send', () => {
  it('takes a table with a primary key, flagging its key as pgoutput does', () => {
    expect(resyncable(facts())).toEqual({
      table: {
        schema: 'public',
        name: 'orders',
        keyCols: ['id'],
        columns: [
          { name: 'id', typeOid: 20, typeMod: -1, sqlType: 'bigint', key: true },
          { name: 'note', typeOid: 25, typeMod: -1, sqlType: 'text', key: false },
        ],
      },
    });
  });

  it('chunks a REPLICA IDENTITY FULL table by its primary key, every column flagged as key', () => {
    const r = resyncable(facts({ replicaIdentity: 'f' }));
    expect(r).toMatchObject({ table: { keyCols: ['id'] } });
    expect('table' in r && r.table.columns.every((c) => c.key)).toBe(true);
  });

  it('chunks by the replica identity index when the primary key is not in it', () => {
    const r = resyncable(facts({ replicaIdentity: 'i', identityIndex: ['note'] }));
    expect(r).toMatchObject({ table: { keyCols: ['note'] } });
  });

  it.each([
    ['no key', facts({ primaryKey: [] }), /no primary key or replica identity index/],
    ['FULL without a primary key', facts({ primaryKey: [], replicaIdentity: 'f' }), /add a primary key/],
    ['REPLICA IDENTITY NOTHING', facts({ replicaIdentity: 'n' }), /no primary key or replica identity/],
    ['another conflict policy', facts({ policy: 'column_lww' }), /conflict policy column_lww/],
    ['no publication', facts({ published: false }), /in no publication/],
    ['a partitioned table', facts({ relkind: 'p' }), /partitioned: resync its partitions/],
  ])('refuses a table with %s, saying why', (_what, f, why) => {
    const r = resyncable(f);
    expect('refused' in r && r.refused).toMatch(why);
  });
});

describe('the chunk statements', () => {
  const t = (resyncable(facts()) as { table: Parameters<typeof rowsChunkSql>[0] }).table;

  it('read rows in key order after the last key, cast back to its type, and write them with the high watermark', () => {
    const first = rowsChunkSql(t, true);
    const next = rowsChunkSql(t, false);
    // the first chunk has no key to start after (its $1 is empty, and typed)
    expect(first).toContain('cardinality($1::text[]) = 0');
    expect(next).toContain('(t."id") > (($1::text[])[1]::bigint)');
    for (const sql of [first, next]) {
      expect(sql).toContain('order by t."id"');
      expect(sql).toContain('limit $2');
      // the output function's text, not ::text (which differs for bool, inet, char(n))
      expect(sql).toContain(`format('%s', t."note")`);
      expect(sql).toContain("pg_logical_emit_message(true, 'brabant.resync.high'");
      expect(sql).toContain('brabant.resynced_versions');
    }
  });

  it('read remembered deletes whose key holds no row now', () => {
    const sql = tombstonesChunkSql(t, false);
    expect(sql).toContain('from brabant.tombstones tb');
    expect(sql).toContain('tb.key > ($1::text[])[1]::jsonb');
    expect(sql).toContain('not exists (select 1 from "public"."orders" x where x."id" = r."id")');
  });

  it('describe the table version the rows were read in', () => {
    expect(JSON.parse(highHeader('rs-1', t, 4, 'rows'))).toEqual({
      resync: 'rs-1',
      schema: 'public',
      name: 'orders',
      chunk: 4,
      kind: 'rows',
      columns: [
        { name: 'id', typeOid: 20, typeMod: -1, key: true },
        { name: 'note', typeOid: 25, typeMod: -1, key: false },
      ],
    });
  });
});

describe('where the next chunk starts', () => {
  it('after the last key of a full chunk; then the deletes; then the next table', () => {
    const c = { ti: 0, phase: 'rows' as const, key: null };
    expect(nextCursor(c, 100, 100, ['42'])).toEqual({ ti: 0, phase: 'rows', key: ['42'] });
    expect(nextCursor(c, 99, 100, ['42'])).toEqual({ ti: 0, phase: 'tombstones', key: null });
    expect(nextCursor({ ...c, phase: 'tombstones' }, 3, 100, ['{}'])).toEqual({
      ti: 1,
      phase: 'rows',
      key: null,
    });
  });
});

describe('progress', () => {
  it('shows tables, chunks, rows, rows/s and the ETA of this run', () => {
    const p = {
      tables: 3,
      tablesDone: 1,
      chunks: 12,
      rows: 12_000,
      tombstones: 40,
      doneBefore: 2_040,
      estimate: 30_040,
      elapsedMs: 2_000,
    };
    expect(progressLine(p)).toBe('tables 1/3, chunks 12, rows 12,000 (+40 deletes), 5,000 rows/s, ETA 4 s');
    expect(progressLine({ ...p, tablesDone: 3 })).toMatch(/, done$/);
    expect(progressLine({ ...p, elapsedMs: 0 })).toMatch(/ETA unknown$/);
  });

  it('takes a chunk size from 1 to 100000', () => {
    expect(chunkRowsOf(undefined)).toBe(1000);
    expect(chunkRowsOf('50')).toBe(50);
    expect(() => chunkRowsOf('0')).toThrow(/--chunk-rows/);
  });
});

describe('a failure while resyncing', () => {
  const pgError = (code: string | undefined, message: string) => Object.assign(new Error(message), { code });
  it.each([
    [
      'the connection lost',
      pgError(undefined, 'Connection terminated unexpectedly'),
      'SOURCE_UNAVAILABLE',
      /lost node vl-1 .*goes on after the last chunk/,
    ],
    [
      'the backend terminated',
      pgError('57P01', 'terminating connection due to administrator command'),
      'SOURCE_UNAVAILABLE',
      /run the same command again/,
    ],
    ['a socket error', pgError('ECONNRESET', 'read ECONNRESET'), 'SOURCE_UNAVAILABLE', /lost node vl-1/],
    [
      'a privilege missing',
      pgError('42501', 'permission denied for function pg_logical_emit_message'),
      'PERMISSION_DENIED',
      /call pg_logical_emit_message/,
    ],
    [
      'a table dropped meanwhile',
      pgError('42P01', 'relation "public.items" does not exist'),
      'CONFIG_INVALID',
      /changed on node vl-1 while it ran/,
    ],
    [
      'anything else',
      pgError('XX000', 'cache lookup failed'),
      'INTERNAL_ERROR',
      /SQLSTATE XX000: cache lookup failed.*report it/,
    ],
    ['a bug', new TypeError('x is undefined'), 'INTERNAL_ERROR', /x is undefined/],
  ])('names %s, with what to do', (_what, err, code, message) => {
    const e = explainFailure(err, 'vl-1') as BrabantError;
    expect(e).toBeInstanceOf(BrabantError);
    expect(e.code).toBe(code);
    expect(e.message).toMatch(message);
    expect(e.cause).toBe(err);
  });

  it('leaves a Brabant error as it is', () => {
    const e = new BrabantError('CONFIG_INVALID', 'x');
    expect(explainFailure(e, 'vl-1')).toBe(e);
  });
});
