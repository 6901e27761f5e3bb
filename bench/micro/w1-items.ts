/** W1's items table as the in-process benches use it: its table version, and row `i`'s text values. */
import type { PgTypeInfo } from '../../services/protocol/pg-types.ts';
import { buildTableSchema, type TableSchema } from '../../services/protocol/table-schema.ts';

/** W1's source transactions hold 100 rows each. */
export const TX_ROWS = 100;

const pgt = (name: string, varlena = false): PgTypeInfo => ({
  oid: 0,
  schema: 'pg_catalog',
  name,
  typtype: 'b',
  category: 'X',
  varlena,
});

export function itemsSchema(): TableSchema {
  return buildTableSchema({
    schema: 'public',
    name: 'items',
    columns: [
      { name: 'id', type: pgt('int8'), typeMod: -1, isKey: true },
      { name: 'region', type: pgt('text', true), typeMod: -1, isKey: false },
      { name: 'qty', type: pgt('int4'), typeMod: -1, isKey: false },
      { name: 'payload', type: pgt('text', true), typeMod: -1, isKey: false },
      { name: 'updated_at', type: pgt('timestamptz'), typeMod: -1, isKey: false },
    ],
  });
}

const PAYLOAD = 'x'.repeat(100);

/** The text values of row `i` (0-based), in the table's column order. */
export function itemValues(i: number): string[] {
  return [String(i + 1), 'vlaanderen', String(i % 1000), PAYLOAD, '2026-12-02 07:00:00.123456+00'];
}
