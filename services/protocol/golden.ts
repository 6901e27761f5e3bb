/**
 * The golden records of the wire contract: change events built the way capture builds them (one
 * table version, the Control schema), with the PostgreSQL text forms they carry. Their framed
 * bytes, the writer schema and what they decode to are checked in under schemas/v1/fixtures/
 * (`npm run fixtures:write` adds missing files; it never overwrites one). golden.test.ts decodes
 * every checked-in record, so a reader change that breaks what an earlier build wrote fails, and
 * re-encodes these, so a writer change shows (write it under a new fixture name and keep the old).
 *
 * Writer revisions (a fixture name's suffix): none, the first build; `-r2`, since key fields are
 * nullable with null defaults, Row fields have null defaults, and dates, times and timestamps a
 * standard client cannot hold travel as text (pg-datetime.ts).
 */
import { avroType } from './avro.ts';
import { encodeControlRecord, encodeDdlRecord, encodeTableRecord } from './change-encoder.ts';
import { DDL_MESSAGE_PREFIX, type DdlEvent } from './ddl.ts';
import { controlSchema, ddlEventSchema } from './envelope.ts';
import type { PgTypeInfo } from './pg-types.ts';
import { encodeResyncHeaders, RESYNC_ENVELOPE_VERSION, type ResyncMark } from './resync.ts';
import { buildTableSchema, type TableShape, type TextValue, UNCHANGED } from './table-schema.ts';

export const FIXTURE_DIR = new URL('../../schemas/v1/fixtures/', import.meta.url);

export interface GoldenRecord {
  name: string;
  schemaId: number;
  /** The writer schema, as registered. */
  schema: Record<string, unknown>;
  bytes: Buffer;
  /** What a reader decodes, as JSON (bigints as strings, the unchanged-TOAST marker as "(unchanged toast)"). */
  decoded: unknown;
  /** The Kafka record headers the reader is given with it (resync rows carry their version there). */
  headers?: Record<string, string>;
}

const base = (name: string, extra: Partial<PgTypeInfo> = {}): PgTypeInfo => ({
  oid: 0,
  schema: 'pg_catalog',
  name,
  typtype: 'b',
  category: 'X',
  varlena: false,
  ...extra,
});
const text = base('text', { varlena: true });
const REVISION = '-r2';

const ORDERS: TableShape = {
  schema: 'shop',
  name: 'order lines',
  columns: [
    { name: 'id', type: base('int8'), typeMod: -1, isKey: true },
    { name: 'line', type: base('int4'), typeMod: -1, isKey: true },
    { name: 'note', type: text, typeMod: -1, isKey: false },
    { name: 'amount', type: base('numeric', { varlena: true }), typeMod: (10 << 16) + 2 + 4, isKey: false },
    { name: 'ratio', type: base('float8'), typeMod: -1, isKey: false },
    { name: 'paid', type: base('bool'), typeMod: -1, isKey: false },
    { name: 'at', type: base('timestamptz'), typeMod: -1, isKey: false },
    { name: 'day', type: base('date'), typeMod: -1, isKey: false },
    { name: 'ref', type: base('uuid'), typeMod: -1, isKey: false },
    { name: 'blob', type: base('bytea', { varlena: true }), typeMod: -1, isKey: false },
    {
      name: 'tags',
      type: base('_text', { category: 'A', varlena: true, elem: text }),
      typeMod: -1,
      isKey: false,
    },
    { name: 'span', type: base('interval'), typeMod: -1, isKey: false },
  ],
};

const ORIGIN = { region: 'vlaanderen', node: 'vl-1' };
const tx = (index: number, last: boolean) => ({
  xid: 771n,
  commitLsn: 0x3_016b3748n,
  commitTs: 1_764_000_000_123_456n,
  index,
  last,
});

const FULL_ROW: TextValue[] = [
  '42',
  '1',
  'it’s "quoted", with\\backslash',
  '-12.50',
  '0.1',
  't',
  '2026-11-26 04:00:00.5+00',
  '2024-02-29',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '\\x00ff10',
  '{"a b",NULL,"c,d"}',
  'P1Y2M3DT4H5M6S',
];

function tableRecords(): GoldenRecord[] {
  const t = buildTableSchema(ORDERS);
  const id = 101;
  const keyOf = (row: TextValue[]) => t.key(row);
  const changed: TextValue[] = [...FULL_ROW];
  changed[2] = UNCHANGED;
  changed[3] = 'NaN';
  changed[10] = '{{1,2},{3,4}}';
  changed[11] = null;
  const moved: TextValue[] = [...FULL_ROW];
  moved[1] = '2';
  return [
    {
      name: `table-insert${REVISION}`,
      schemaId: id,
      schema: t.schema,
      bytes: encodeTableRecord(id, t, {
        origin: ORIGIN,
        tx: tx(0, false),
        op: 'INSERT',
        key: keyOf(FULL_ROW),
        before: null,
        after: t.row(FULL_ROW),
      }),
      decoded: rowChange('INSERT', 0, false, { id: '42', line: '1' }, null, FULL_ROW),
    },
    {
      name: `table-update-unchanged-toast${REVISION}`,
      schemaId: id,
      schema: t.schema,
      bytes: encodeTableRecord(id, t, {
        origin: ORIGIN,
        tx: tx(1, false),
        op: 'UPDATE',
        key: keyOf(changed),
        before: null,
        after: t.row(changed),
      }),
      decoded: rowChange('UPDATE', 1, false, { id: '42', line: '1' }, null, changed),
    },
    {
      name: `table-update-full-old-row${REVISION}`,
      schemaId: id,
      schema: t.schema,
      bytes: encodeTableRecord(id, t, {
        origin: ORIGIN,
        tx: tx(2, false),
        op: 'UPDATE',
        key: keyOf(FULL_ROW),
        before: t.row(FULL_ROW),
        after: t.row(moved),
      }),
      decoded: rowChange('UPDATE', 2, false, { id: '42', line: '1' }, FULL_ROW, moved),
    },
    {
      name: `table-delete${REVISION}`,
      schemaId: id,
      schema: t.schema,
      bytes: encodeTableRecord(id, t, {
        origin: ORIGIN,
        tx: tx(3, false),
        op: 'DELETE',
        key: keyOf(moved),
        before: null,
        after: null,
      }),
      decoded: rowChange('DELETE', 3, false, { id: '42', line: '2' }, null, null),
    },
    {
      name: `table-truncate${REVISION}`,
      schemaId: id,
      schema: t.schema,
      bytes: encodeTableRecord(id, t, {
        origin: ORIGIN,
        tx: tx(4, true),
        op: 'TRUNCATE',
        key: null,
        before: null,
        after: null,
      }),
      decoded: rowChange('TRUNCATE', 4, true, null, null, null),
    },
  ];
}

function rowChange(
  op: string,
  index: number,
  last: boolean,
  key: Record<string, string | null> | null,
  before: TextValue[] | null,
  after: TextValue[] | null,
) {
  const row = (values: TextValue[] | null) =>
    values === null
      ? null
      : Object.fromEntries(
          ORDERS.columns.map((c, i) => [c.name, values[i] === UNCHANGED ? '(unchanged toast)' : values[i]]),
        );
  return {
    kind: 'row',
    origin: ORIGIN,
    tx: jsonTx(tx(index, last)),
    op,
    schema: ORDERS.schema,
    table: ORDERS.name,
    key,
    before: row(before),
    after: row(after),
  };
}

function jsonTx(t: ReturnType<typeof tx>) {
  return { ...t, xid: String(t.xid), commitLsn: String(t.commitLsn), commitTs: String(t.commitTs) };
}

/** An ADD COLUMN as the DdlEvent record carries it (fields in the schema's order). */
function ddlRecords(): GoldenRecord[] {
  const schema = ddlEventSchema();
  const type = avroType(schema);
  const id = 8;
  const event: DdlEvent = {
    version: 1,
    statement: "alter table orders add column note text default ''",
    searchPath: '"$user", public',
    role: 'app',
    tags: ['ALTER TABLE'],
    seq: 0,
    concurrently: false,
    objects: [{ type: 'table', identity: 'public.orders' }],
    dropped: [],
    tables: [
      {
        schema: 'public',
        name: 'orders',
        columns: [
          { name: 'id', type: 'bigint', notNull: true, default: null, identity: '', generated: '' },
          { name: 'note', type: 'text', notNull: false, default: "''::text", identity: '', generated: '' },
        ],
        primaryKey: ['id'],
        replicaIdentity: 'd',
        fingerprint: '5c2b0d0a6f0e4f7c9a1e2d3b4c5a6978',
      },
    ],
    renames: [],
  };
  return [
    {
      name: 'ddl-event',
      schemaId: id,
      schema,
      bytes: encodeDdlRecord(id, type, { origin: ORIGIN, tx: tx(0, true), event }),
      decoded: {
        kind: 'control',
        origin: ORIGIN,
        tx: jsonTx(tx(0, true)),
        control: 'DDL',
        prefix: DDL_MESSAGE_PREFIX,
        content: Buffer.from(JSON.stringify(event)).toString('base64'),
      },
    },
  ];
}

function controlRecords(): GoldenRecord[] {
  const schema = controlSchema();
  const type = avroType(schema);
  const id = 7;
  const content = Buffer.from(JSON.stringify({ node: 'vl-1', at: '2026-11-26T04:00:00.000Z' }));
  return [
    {
      name: 'control-heartbeat',
      schemaId: id,
      schema,
      bytes: encodeControlRecord(id, type, {
        origin: ORIGIN,
        tx: tx(0, true),
        kind: 'HEARTBEAT',
        prefix: 'brabant.heartbeat',
        content,
      }),
      decoded: {
        kind: 'control',
        origin: ORIGIN,
        tx: jsonTx(tx(0, true)),
        control: 'HEARTBEAT',
        prefix: 'brabant.heartbeat',
        content: content.toString('base64'),
      },
    },
  ];
}

/**
 * A REPLICA IDENTITY FULL table (every column is key) with the values standard clients cannot
 * hold in a logical type, NULLs in the key, -0, and an array of box (delimiter `;`); and the
 * insert of a table without replica identity (an empty Key).
 */
const EDGES: TableShape = {
  schema: 'public',
  name: 'edges',
  columns: [
    { name: 'd', type: base('date'), typeMod: -1, isKey: true },
    { name: 'bc', type: base('date'), typeMod: -1, isKey: true },
    { name: 't', type: base('time'), typeMod: -1, isKey: true },
    { name: 'late', type: base('timestamp'), typeMod: -1, isKey: true },
    { name: 'tz', type: base('timestamptz'), typeMod: -1, isKey: true },
    { name: 'z', type: base('float8'), typeMod: -1, isKey: true },
    {
      name: 'zs',
      type: base('_float4', { category: 'A', varlena: true, elem: base('float4') }),
      typeMod: -1,
      isKey: true,
    },
    {
      name: 'boxes',
      type: base('_box', { category: 'A', varlena: true, elem: base('box', { delimiter: ';' }) }),
      typeMod: -1,
      isKey: true,
    },
    { name: 'note', type: text, typeMod: -1, isKey: true },
  ],
};

const EDGE_ROW: TextValue[] = [
  'infinity',
  '0044-03-15 BC',
  '24:00:00',
  '294276-12-31 23:59:59.999999',
  '-infinity',
  '-0',
  '{-0,1.1,NULL}',
  '{(1,1),(0,0);(2,2),(1,1)}',
  null,
];

function edgeRecords(): GoldenRecord[] {
  const t = buildTableSchema(EDGES);
  const keyless = buildTableSchema({
    ...EDGES,
    name: 'keyless',
    columns: EDGES.columns.map((c) => ({ ...c, isKey: false })),
  });
  const decoded = (table: TableShape, key: Record<string, string | null> | null) => {
    const row = Object.fromEntries(table.columns.map((c, i) => [c.name, EDGE_ROW[i]]));
    return {
      ...rowChange('INSERT', 0, true, key, null, null),
      schema: table.schema,
      table: table.name,
      after: row,
    };
  };
  // every column is key, its NULLs too (a whole-row key matches NULL to NULL)
  const fullKey = Object.fromEntries(EDGES.columns.map((c, i) => [c.name, EDGE_ROW[i] ?? null]));
  // what a reader gives back for the float4 array: each element as it reads back from a float
  const readBack = { ...fullKey, zs: '{"-0","1.1",NULL}', boxes: '{"(1,1),(0,0)";"(2,2),(1,1)"}' };
  const edge = decoded(EDGES, readBack);
  const keylessDecoded = decoded({ ...EDGES, name: 'keyless' }, {});
  for (const d of [edge, keylessDecoded]) Object.assign(d.after, { zs: readBack.zs, boxes: readBack.boxes });
  const insert = (table: typeof t, id: number): Buffer =>
    encodeTableRecord(id, table, {
      origin: ORIGIN,
      tx: tx(0, true),
      op: 'INSERT',
      key: table.key(EDGE_ROW),
      before: null,
      after: table.row(EDGE_ROW),
    });
  return [
    {
      name: `table-insert-edge-values${REVISION}`,
      schemaId: 102,
      schema: t.schema,
      bytes: insert(t, 102),
      decoded: edge,
    },
    {
      name: `table-insert-no-replica-identity${REVISION}`,
      schemaId: 103,
      schema: keyless.schema,
      bytes: insert(keyless, 103),
      decoded: keylessDecoded,
    },
  ];
}

/**
 * Resync rows (envelope 2, protocol/resync.ts): a row the node re-emitted, with the version of
 * the commit that wrote it (another node's here), and a remembered delete whose version
 * PostgreSQL no longer knows (`oldest`).
 */
function resyncRecords(): GoldenRecord[] {
  const t = buildTableSchema(ORDERS);
  const id = 101;
  const row: ResyncMark = {
    id: 'rs-20261126-0400-ab12',
    versionTs: 1_763_990_000_654_321n,
    versionNode: 'wa-1',
  };
  const tomb: ResyncMark = { id: row.id, versionTs: null, versionNode: 'vl-1' };
  const json = (m: ResyncMark) => ({ ...m, versionTs: m.versionTs === null ? null : String(m.versionTs) });
  const key = { id: '42', line: '1' };
  return [
    {
      name: `table-resync-insert${REVISION}`,
      schemaId: id,
      schema: t.schema,
      bytes: encodeTableRecord(
        id,
        t,
        {
          origin: ORIGIN,
          tx: tx(1, false),
          op: 'INSERT',
          key: t.key(FULL_ROW),
          before: null,
          after: t.row(FULL_ROW),
        },
        RESYNC_ENVELOPE_VERSION,
      ),
      headers: encodeResyncHeaders(row),
      decoded: { ...rowChange('INSERT', 1, false, key, null, FULL_ROW), resync: json(row) },
    },
    {
      name: `table-resync-delete${REVISION}`,
      schemaId: id,
      schema: t.schema,
      bytes: encodeTableRecord(
        id,
        t,
        { origin: ORIGIN, tx: tx(2, true), op: 'DELETE', key: t.key(FULL_ROW), before: null, after: null },
        RESYNC_ENVELOPE_VERSION,
      ),
      headers: encodeResyncHeaders(tomb),
      decoded: { ...rowChange('DELETE', 2, true, key, null, null), resync: json(tomb) },
    },
  ];
}

export function goldenRecords(): GoldenRecord[] {
  return [...tableRecords(), ...edgeRecords(), ...controlRecords(), ...ddlRecords(), ...resyncRecords()];
}

/** A decoded change as the JSON the fixture files hold. */
export function changeAsJson(change: unknown): unknown {
  return JSON.parse(
    JSON.stringify(change, (_k, v) => {
      if (typeof v === 'bigint') return v.toString();
      if (typeof v === 'symbol') return '(unchanged toast)';
      if (v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer')
        return Buffer.from((v as { data: number[] }).data).toString('base64');
      return v;
    }),
  );
}
