import { describe, expect, it } from 'vitest';
import { avroType } from './avro.ts';
import type { PgTypeInfo } from './pg-types.ts';
import { avroNames, buildTableSchema, type TableShape, UNCHANGED } from './table-schema.ts';

const pgt = (name: string, varlena = false): PgTypeInfo => ({
  oid: 0,
  schema: 'pg_catalog',
  name,
  typtype: 'b',
  category: 'X',
  varlena,
});

const items: TableShape = {
  schema: 'public',
  name: 'items',
  columns: [
    { name: 'id', type: pgt('int8'), typeMod: -1, isKey: true },
    { name: 'qty', type: pgt('int4'), typeMod: -1, isKey: false },
    { name: 'payload', type: pgt('text', true), typeMod: -1, isKey: false },
    { name: 'price', type: pgt('numeric', true), typeMod: (8 << 16) + 2 + 4, isKey: false },
    { name: 'updated at', type: pgt('timestamptz'), typeMod: -1, isKey: false },
  ],
};

describe('table schemas', () => {
  it('sanitizes column names into unique Avro names', () => {
    expect(avroNames(['id', 'updated at', 'updated_at', '1st', 'ü'])).toEqual([
      'id',
      'updated_at',
      'updated_at_2',
      '_1st',
      '_',
    ]);
  });

  it('generates a registrable record that encodes a full change event', () => {
    const ts = buildTableSchema(items);
    expect(ts.fullName).toBe('brabant.v1.table.public.items');
    const row = ts.row(['1', '5', UNCHANGED, 'NaN', '2026-11-26 04:00:00+00']);
    expect(row).toEqual({
      id: { long: 1n },
      qty: { int: 5 },
      payload: { 'brabant.v1.Unchanged': 'UNCHANGED_TOAST' },
      price: { string: 'NaN' },
      updated_at: { long: 1795665600000000n },
    });
    const event = {
      envelope: 1,
      origin: { region: 'vlaanderen', node: 'vl-1' },
      tx: { xid: 700n, commitLsn: 0x16b374d848n, commitTs: 1795665600000000n, index: 0, last: true },
      op: 'UPDATE',
      schema: 'public',
      table: 'items',
      key: { 'brabant.v1.table.public.items.Key': ts.key(['1', '5', UNCHANGED, null, null]) },
      before: null,
      after: { 'brabant.v1.table.public.items.Row': row },
    };
    const buf = ts.type.toBuffer(event);
    const back = ts.type.fromBuffer(buf) as typeof event;
    expect(back).toEqual(event);
    expect(ts.rowText(back.after['brabant.v1.table.public.items.Row'])).toEqual([
      '1',
      '5',
      UNCHANGED,
      'NaN',
      '2026-11-26 04:00:00+00',
    ]);
    // The schema is self-contained JSON: a reader that knows nothing of Brabant can parse it.
    expect(() => avroType(JSON.parse(JSON.stringify(ts.schema)))).not.toThrow();
  });

  it('gives the same fingerprint to the same shape and a new one to a changed shape', () => {
    const a = buildTableSchema(items);
    const b = buildTableSchema({ ...items, columns: [...items.columns] });
    const c = buildTableSchema({ ...items, columns: items.columns.slice(0, 4) });
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(a.fingerprint).not.toBe(c.fingerprint);
  });

  it('refuses tuples that do not match the table version, naming the table', () => {
    const ts = buildTableSchema(items);
    expect(() => ts.row(['1'])).toThrow(/public.items: tuple has 1 column/);
    expect(() => ts.row(['x', '1', null, null, null])).toThrow(/public.items.id: 'x' is not a valid bigint/);
    expect(() => ts.key([UNCHANGED, '1', null, null, null])).toThrow(/key column id has no value/);
  });

  it('keeps NULLs in the key (a REPLICA IDENTITY FULL key is the whole row) and reads them back', () => {
    const full = buildTableSchema({ ...items, columns: items.columns.map((c) => ({ ...c, isKey: true })) });
    const key = full.key(['1', null, 'x', null, 'infinity']);
    expect(key).toEqual({
      id: { long: 1n },
      qty: null,
      payload: { string: 'x' },
      price: null,
      updated_at: { string: 'infinity' },
    });
    const keyType = (full.schema.fields as { name: string; type: unknown[] }[]).find(
      (f) => f.name === 'key',
    )!;
    const keyRecord = keyType.type[1] as { fields: { type: unknown; default: unknown }[] };
    // every key field nullable with a null default: FULL keys hold NULLs, and a key added later stays compatible
    expect(
      keyRecord.fields.every((f) => Array.isArray(f.type) && f.type[0] === 'null' && f.default === null),
    ).toBe(true);
  });

  it('gives a table without replica identity an empty Key record', () => {
    const none = buildTableSchema({ ...items, columns: items.columns.map((c) => ({ ...c, isKey: false })) });
    expect(none.key(['1', '2', 'x', null, null])).toEqual({});
    expect(() => avroType(JSON.parse(JSON.stringify(none.schema)))).not.toThrow();
  });
});
