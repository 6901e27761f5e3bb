import { describe, expect, it } from 'vitest';
import { requestedChange } from '../apply/replay.ts';
import type { TargetTable } from '../apply/target-catalog.ts';
import { deadLetter } from '../capture/rejects.ts';
import { ChangeDecoder } from '../protocol/change-decoder.ts';
import { lsn, parseLsn } from '../protocol/lsn.ts';
import { UNCHANGED } from '../protocol/table-schema.ts';
import { isOpen, parseDeadLetter, type RawRecord } from './deadletter-model.ts';

const nodes = ['vl-1', 'wa-1', 'wa-2'];
const record = (over: Partial<RawRecord>): RawRecord => ({
  region: 'vlaanderen',
  partition: 2,
  offset: '17',
  timestamp: String(Date.parse('2026-12-01T10:00:00Z')),
  key: 'vl-1',
  headers: {},
  value: null,
  ...over,
});

describe('dead letters as the operator sees them', () => {
  it('reads capture’s dead letter (rejects.ts) as one for every other node, re-appliable', () => {
    const dl = deadLetter(
      {
        code: 'VALUE_UNREPRESENTABLE',
        table: 'public.items',
        reason: 'column at: year 294276 is past what timestamp-micros holds',
        fix: 'store it as text',
        raw: { op: 'INSERT', columns: ['id', 'at'], before: null, after: { id: '7', at: '294276-01-01' } },
      },
      {
        node: 'vl-1',
        region: 'vlaanderen',
        xid: 9n,
        commitLsn: parseLsn('0/16B3748'),
        commitTs: 1_700_000_000_000_000n,
        index: 0,
      },
    );
    const d = parseDeadLetter(record({ headers: dl.headers, value: dl.value }), nodes);
    expect(d).toMatchObject({
      id: 'vlaanderen:2@17',
      kind: 'capture',
      source: 'vl-1',
      targets: ['wa-1', 'wa-2'],
      table: 'public.items',
      commitLsn: '0/16B3748',
      index: 0,
      fix: 'store it as text',
      at: '2026-12-01T10:00:00.000Z',
    });
    expect(d.replay?.format).toBe('capture');
    expect(
      isOpen(d, [{ node: 'wa-1', id: d.id, action: 'reapply', state: 'done', detail: null, at: '' }]),
    ).toBe(true);
    expect(
      isOpen(d, [
        { node: 'wa-1', id: d.id, action: 'reapply', state: 'done', detail: null, at: '' },
        { node: 'wa-2', id: d.id, action: 'discard', state: 'done', detail: null, at: '' },
      ]),
    ).toBe(false);
  });

  it('gives a dead letter of another deployment’s node sharing the cluster no target here', () => {
    const dl = deadLetter(
      {
        code: 'VALUE_UNREPRESENTABLE',
        table: 'public.items',
        reason: 'does not encode',
        fix: 'report it',
        raw: { op: 'INSERT', columns: ['id'], before: null, after: { id: '7' } },
      },
      {
        node: 'other-1',
        region: 'vlaanderen',
        xid: 9n,
        commitLsn: parseLsn('0/16B3748'),
        commitTs: 1n,
        index: 0,
      },
    );
    const d = parseDeadLetter(record({ key: 'other-1', headers: dl.headers, value: dl.value }), nodes);
    expect(d.source).toBe('other-1');
    expect(d.targets).toEqual([]);
  });

  it('refuses to re-apply bytes that are not text', () => {
    const dl = deadLetter(
      {
        code: 'VALUE_UNREPRESENTABLE',
        table: 'public.b',
        reason: 'not UTF-8',
        fix: 'x',
        raw: {
          op: 'INSERT',
          columns: ['id'],
          before: null,
          after: { id: { base64: '/w==', why: 'not UTF-8' } },
        },
      },
      { node: 'vl-1', region: 'vlaanderen', xid: 1n, commitLsn: parseLsn('0/1'), commitTs: 1n, index: 0 },
    );
    const d = parseDeadLetter(record({ headers: dl.headers, value: dl.value }), nodes);
    expect(d.replay).toBeUndefined();
    expect(d.notReappliable).toContain('not text');
  });

  it('reads apply’s row, DDL and undecodable dead letters (side-topics.ts), for their target', () => {
    const row = parseDeadLetter(
      record({
        key: 'vl-1',
        headers: {
          'brabant.reason': 'new row violates check constraint "short"',
          'brabant.target-node': 'wa-1',
          'brabant.commit-lsn': String(0x16b3748),
          'brabant.index': '3',
        },
        value: Buffer.from(
          JSON.stringify({ kind: 'row', schema: 'public', table: 'items', key: { id: '10' } }),
        ),
      }),
      nodes,
    );
    expect(row).toMatchObject({
      kind: 'row',
      targets: ['wa-1'],
      table: 'public.items',
      commitLsn: '0/16B3748',
      index: 3,
    });
    expect(row.replay?.format).toBe('apply');
    const ddl = parseDeadLetter(
      record({
        headers: { 'brabant.reason': 'DDL failed: x', 'brabant.target-node': 'wa-2' },
        value: Buffer.from(JSON.stringify({ kind: 'ddl' })),
      }),
      nodes,
    );
    expect(ddl.kind).toBe('ddl');
    expect(ddl.notReappliable).toContain('brabant ddl resolve');
    const raw = parseDeadLetter(
      record({
        headers: {
          'brabant.reason': 'bad framing',
          'brabant.target-node': 'wa-1',
          'brabant.source-topic': 't',
        },
        value: Buffer.from([0, 1, 2]),
      }),
      nodes,
    );
    expect(raw).toMatchObject({ kind: 'undecodable', replay: { format: 'framed', payload: 'AAEC' } });
  });
});

describe('the change a re-apply request holds', () => {
  const items = { schema: 'public', name: 'items', primaryKey: ['id'] } as unknown as TargetTable;
  const deps = {
    catalog: { table: async (s: string, n: string) => (s === 'public' && n === 'items' ? items : undefined) },
    decoder: new ChangeDecoder({ schemaById: async () => '"null"' }),
  } as unknown as Parameters<typeof requestedChange>[3];

  it('turns capture’s raw change into apply’s, keyed by the target’s primary key', async () => {
    const c = await requestedChange(
      'capture',
      {
        node: 'vl-1',
        region: 'vlaanderen',
        table: 'public.items',
        tx: { xid: '9', commitLsn: '0/16B3748', commitTs: '1700000000000000', index: 2 },
        change: {
          op: 'UPDATE',
          columns: ['id', 'v'],
          oldKind: 'key',
          before: { id: '7' },
          after: { id: '7', v: { unchangedToast: true } },
        },
      },
      'vl-1',
      deps,
    );
    expect(c).toMatchObject({
      kind: 'row',
      origin: { node: 'vl-1', region: 'vlaanderen' },
      op: 'UPDATE',
      schema: 'public',
      table: 'items',
      key: { id: '7' },
      before: null,
      tx: {
        xid: 9n,
        commitLsn: parseLsn('0/16B3748'),
        commitTs: 1_700_000_000_000_000n,
        index: 2,
        last: true,
      },
    });
    expect(c.after?.v).toBe(UNCHANGED);
  });

  it('reads apply’s dead letter back with its bigints and unchanged TOAST values', async () => {
    const c = await requestedChange(
      'apply',
      {
        kind: 'row',
        origin: { region: 'vlaanderen', node: 'vl-1' },
        tx: { xid: '5', commitLsn: String(0x16b3748), commitTs: '17', index: 0, last: false },
        op: 'INSERT',
        schema: 'public',
        table: 'items',
        key: { id: '1' },
        before: null,
        after: { id: '1', big: '(unchanged toast)' },
      },
      'vl-1',
      deps,
    );
    expect(c.tx).toEqual({ xid: 5n, commitLsn: lsn(0x16b3748n), commitTs: 17n, index: 0, last: true });
    expect(c.after).toEqual({ id: '1', big: UNCHANGED });
  });

  it('says what is wrong with a request it cannot use', async () => {
    await expect(
      requestedChange('capture', { table: 'public.gone', tx: {}, change: { op: 'INSERT' } }, 'vl-1', deps),
    ).rejects.toThrow('table public.gone does not exist on this node');
    await expect(requestedChange('smoke', {}, 'vl-1', deps)).rejects.toThrow(
      "unknown dead-letter format 'smoke'",
    );
  });
});
