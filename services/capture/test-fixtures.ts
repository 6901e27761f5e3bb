/** Shared fixtures of the capture unit tests: a small table version and message builders. */
import { lsn } from '../protocol/lsn.ts';
import type { PgTypeInfo } from '../protocol/pg-types.ts';
import { buildTableSchema, type TableSchema } from '../protocol/table-schema.ts';
import type { PgoutputMessage, RelationMessage, Tuple } from './pgoutput/messages.ts';

const pgt = (name: string, varlena = false): PgTypeInfo => ({
  oid: 0,
  schema: 'pg_catalog',
  name,
  typtype: 'b',
  category: 'X',
  varlena,
});

export const ITEMS_OID = 16400;

export const itemsRelation: RelationMessage = {
  tag: 'relation',
  oid: ITEMS_OID,
  schema: 'public',
  name: 'items',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', isKey: true, typeOid: 20, typeMod: -1 },
    { name: 'payload', isKey: false, typeOid: 25, typeMod: -1 },
  ],
};

export function itemsSchema(): TableSchema {
  return buildTableSchema({
    schema: 'public',
    name: 'items',
    columns: [
      { name: 'id', type: pgt('int8'), typeMod: -1, isKey: true },
      { name: 'payload', type: pgt('text', true), typeMod: -1, isKey: false },
    ],
  });
}

/** Messages of one source transaction with the given changes. */
export function tx(
  commitLsn: bigint,
  changes: PgoutputMessage[],
  opts: { origin?: boolean; xid?: number } = {},
): PgoutputMessage[] {
  const l = lsn(commitLsn);
  return [
    { tag: 'begin', finalLsn: l, commitTime: 1_000_000n, xid: opts.xid ?? 700 },
    ...(opts.origin ? [{ tag: 'origin', originLsn: lsn(5n), name: 'brabant_wa_1' } as const] : []),
    ...changes,
    { tag: 'commit', flags: 0, commitLsn: l, endLsn: lsn(commitLsn + 40n), commitTime: 1_000_000n },
  ];
}

export const insert = (id: number, payload: string | null = `row ${id}`): PgoutputMessage => ({
  tag: 'insert',
  relationOid: ITEMS_OID,
  after: [String(id), payload] as Tuple,
});
