import { describe, expect, it } from 'vitest';
import { ChangeDecoder } from './change-decoder.ts';
import { frame } from './envelope.ts';
import type { PgTypeInfo } from './pg-types.ts';
import { buildTableSchema, UNCHANGED } from './table-schema.ts';

const pgt = (name: string, extra: Partial<PgTypeInfo> = {}): PgTypeInfo => ({
  oid: 0,
  schema: 'pg_catalog',
  name,
  typtype: 'b',
  category: 'X',
  varlena: false,
  ...extra,
});

describe('ChangeDecoder', () => {
  it('reads back what capture wrote, as PostgreSQL text forms by column name', async () => {
    const ts = buildTableSchema({
      schema: 'public',
      name: 'orders',
      columns: [
        { name: 'id', type: pgt('int8'), typeMod: -1, isKey: true },
        { name: 'note text', type: pgt('text', { varlena: true }), typeMod: -1, isKey: false },
        {
          name: 'amount',
          type: pgt('numeric', { varlena: true }),
          typeMod: (10 << 16) + 2 + 4,
          isKey: false,
        },
        { name: 'at', type: pgt('timestamptz'), typeMod: -1, isKey: false },
        {
          name: 'tags',
          type: pgt('_text', { category: 'A', varlena: true, elem: pgt('text', { varlena: true }) }),
          typeMod: -1,
          isKey: false,
        },
        { name: 'day', type: pgt('date'), typeMod: -1, isKey: false },
      ],
    });
    const values = [
      '42',
      UNCHANGED,
      '12.50',
      '2026-11-26 04:00:00.5+00',
      '{"a b",NULL}',
      '2024-02-29',
    ] as const;
    const body = ts.type.toBuffer({
      envelope: 1,
      origin: { region: 'wallonie', node: 'wa-1' },
      tx: { xid: 9n, commitLsn: 0x100n, commitTs: 5n, index: 3, last: true },
      op: 'UPDATE',
      schema: 'public',
      table: 'orders',
      key: { [`${ts.fullName}.Key`]: ts.key([...values]) },
      before: null,
      after: { [`${ts.fullName}.Row`]: ts.row([...values]) },
    });
    const decoder = new ChangeDecoder({
      schemaById: async (id) => (id === 11 ? JSON.stringify(ts.schema) : Promise.reject(new Error('no'))),
    });
    const change = await decoder.decode(frame(11, body));
    expect(change).toEqual({
      kind: 'row',
      origin: { region: 'wallonie', node: 'wa-1' },
      tx: { xid: 9n, commitLsn: 0x100n, commitTs: 5n, index: 3, last: true },
      op: 'UPDATE',
      schema: 'public',
      table: 'orders',
      key: { id: '42' },
      before: null,
      after: {
        id: '42',
        'note text': UNCHANGED,
        amount: '12.50',
        at: '2026-11-26 04:00:00.5+00',
        tags: '{"a b",NULL}',
        day: '2024-02-29',
      },
    });
  });

  it('refuses bad framing and bodies with typed errors', async () => {
    const decoder = new ChangeDecoder({
      schemaById: async () => '{"type":"record","name":"Control","fields":[]}',
    });
    await expect(decoder.decode(Buffer.from([1, 0, 0, 0, 1]))).rejects.toMatchObject({ code: 'UNDECODABLE' });
    await expect(decoder.decode(Buffer.from([0, 0]))).rejects.toMatchObject({ code: 'UNDECODABLE' });
  });
});
