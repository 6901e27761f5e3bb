import { describe, expect, it } from 'vitest';
import { lsn } from '../protocol/lsn.ts';
import { UNCHANGED } from '../protocol/table-schema.ts';
import { Assembler, type Output, type TableVersion } from './assembler.ts';
import { RawValue, UNCHANGED_TOAST } from './pgoutput/messages.ts';
import { ITEMS_OID, insert, itemsSchema, tx } from './test-fixtures.ts';

function run(
  messages: Parameters<Assembler['handle']>[0][],
  skipThrough?: { commitLsn: bigint; index: number },
): Output[] {
  const a = new Assembler({
    tables: new Map([[ITEMS_OID, itemsSchema()]]),
    ...(skipThrough
      ? { skipThrough: { commitLsn: lsn(skipThrough.commitLsn), index: skipThrough.index } }
      : {}),
  });
  const out: Output[] = [];
  for (const m of messages) a.handle(m, out);
  return out;
}

const summary = (out: Output[]) =>
  out.map((o) =>
    o.type === 'event'
      ? `${o.event.kind === 'table' ? o.event.op : o.event.kind === 'control' ? o.event.control : `REJECTED(${o.event.rejected.code})`}@${o.event.tx.commitLsn}#${o.event.index}${o.event.last ? '!' : ''}`
      : `commit@${o.commitLsn}${o.skipped ? `(${o.skipped})` : ''}`,
  );

describe('Assembler', () => {
  it('numbers the events of a transaction and marks the last one', () => {
    const out = run([...tx(100n, [insert(1), insert(2)]), ...tx(200n, [insert(3)])]);
    expect(summary(out)).toEqual([
      'INSERT@100#0',
      'INSERT@100#1!',
      'commit@100',
      'INSERT@200#0!',
      'commit@200',
    ]);
    const first = out[0]!;
    expect(first.type === 'event' && first.event.kind === 'table' && first.event.key).toEqual({
      id: { long: 1n },
    });
  });

  it('skips transactions that carry a replication origin, but reports their commit', () => {
    const out = run([...tx(100n, [insert(1)], { origin: true }), ...tx(200n, [insert(2)])]);
    expect(summary(out)).toEqual(['commit@100(origin)', 'INSERT@200#0!', 'commit@200']);
  });

  it('skips what is already in Kafka, also part of a transaction', () => {
    const out = run([...tx(100n, [insert(1), insert(2)]), ...tx(200n, [insert(3), insert(4), insert(5)])], {
      commitLsn: 200n,
      index: 1,
    });
    expect(summary(out)).toEqual(['commit@100(duplicate)', 'INSERT@200#2!', 'commit@200']);
  });

  it('turns updates, deletes, truncates and messages into events', () => {
    const out = run(
      tx(300n, [
        { tag: 'update', relationOid: ITEMS_OID, before: null, after: ['1', UNCHANGED_TOAST] },
        {
          tag: 'update',
          relationOid: ITEMS_OID,
          before: { kind: 'key', tuple: ['1', null] },
          after: ['2', 'x'],
        },
        { tag: 'delete', relationOid: ITEMS_OID, before: { kind: 'old', tuple: ['2', 'x'] } },
        { tag: 'truncate', cascade: false, restartIdentity: false, relationOids: [ITEMS_OID] },
        {
          tag: 'message',
          transactional: true,
          lsn: lsn(290n),
          prefix: 'brabant.heartbeat',
          content: Buffer.from('{}'),
        },
        { tag: 'message', transactional: false, lsn: lsn(291n), prefix: 'app', content: Buffer.from('x') },
        { tag: 'message', transactional: true, lsn: lsn(292n), prefix: 'app', content: Buffer.from('y') },
      ]),
    );
    expect(summary(out)).toEqual([
      'UPDATE@300#0',
      'UPDATE@300#1',
      'DELETE@300#2',
      'TRUNCATE@300#3',
      'HEARTBEAT@300#4',
      'MESSAGE@300#5!',
      'commit@300',
    ]);
    const ev = (i: number) => {
      const o = out[i]!;
      if (o.type !== 'event' || o.event.kind !== 'table') throw new Error('not a table event');
      return o.event;
    };
    expect(ev(0).after).toEqual({ id: { long: 1n }, payload: { 'brabant.v1.Unchanged': 'UNCHANGED_TOAST' } });
    expect(ev(0).table.rowText(ev(0).after!)).toEqual(['1', UNCHANGED]);
    // key change: the key is the old one, the new row is in after
    expect(ev(1).key).toEqual({ id: { long: 1n } });
    expect(ev(1).before).toBeNull();
    expect(ev(2).before).toEqual({ id: { long: 2n }, payload: { string: 'x' } });
    expect(ev(3).key).toBeNull();
  });

  it('refuses a broken sequence with a typed error', () => {
    expect(() => run([insert(1)])).toThrow(/outside a transaction/);
    expect(() =>
      run([
        { tag: 'begin', finalLsn: lsn(1n), commitTime: 0n, xid: 1 },
        { tag: 'begin', finalLsn: lsn(2n), commitTime: 0n, xid: 2 },
      ]),
    ).toThrow(/Begin inside/);
  });

  it('rejects a change it cannot build at its own position, and goes on with the rest', () => {
    const bad = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // 'caf' + latin-1 é: not UTF-8
    const out = run(
      tx(100n, [
        insert(1),
        { tag: 'insert', relationOid: ITEMS_OID, after: ['x', 'bad int'] },
        { tag: 'insert', relationOid: ITEMS_OID, after: ['3', new RawValue(bad, 'not valid UTF-8')] },
        { tag: 'insert', relationOid: 999, after: ['1'] },
        insert(5),
      ]),
    );
    expect(summary(out)).toEqual([
      'INSERT@100#0',
      'REJECTED(VALUE_UNREPRESENTABLE)@100#1',
      'REJECTED(VALUE_UNREPRESENTABLE)@100#2',
      'REJECTED(CATALOG_MISMATCH)@100#3',
      'INSERT@100#4!',
      'commit@100',
    ]);
    const rejected = out.flatMap((o) =>
      o.type === 'event' && o.event.kind === 'rejected' ? [o.event.rejected] : [],
    );
    expect(rejected[0]).toMatchObject({
      table: 'public.items',
      reason: expect.stringMatching(/public.items.id: 'x' is not a valid bigint/),
      raw: { op: 'INSERT', columns: ['id', 'payload'], after: { id: 'x', payload: 'bad int' } },
    });
    expect(rejected[1]).toMatchObject({
      reason: 'public.items.payload: a value of 4 bytes is not valid UTF-8',
      raw: { after: { id: '3', payload: { base64: bad.toString('base64'), why: 'not valid UTF-8' } } },
    });
    expect(rejected[2]).toMatchObject({
      table: 'relation 999',
      reason: expect.stringMatching(/before its Relation message/),
    });
  });

  it('rejects the changes of a paused table, and an undecodable change, but stops on a broken structure', () => {
    const a = new Assembler({
      tables: new Map<number, TableVersion>([
        [ITEMS_OID, itemsSchema()],
        [
          777,
          {
            paused: true,
            schema: 'public',
            name: 'gone',
            columns: ['id'],
            rejection: { code: 'CATALOG_MISMATCH', reason: 'type oid 5 not found', fix: 'x' },
          },
        ],
      ]),
    });
    const out: Output[] = [];
    for (const m of tx(100n, [
      { tag: 'insert', relationOid: 777, after: ['1'] },
      { tag: 'undecodable', kind: 'I', relationOid: ITEMS_OID, reason: 'truncated', bytes: Buffer.from('I') },
      { tag: 'truncate', cascade: false, restartIdentity: false, relationOids: [777, ITEMS_OID] },
    ]))
      a.handle(m, out);
    expect(summary(out)).toEqual([
      'REJECTED(CATALOG_MISMATCH)@100#0',
      'REJECTED(UNDECODABLE)@100#1',
      'REJECTED(CATALOG_MISMATCH)@100#2',
      'TRUNCATE@100#3!',
      'commit@100',
    ]);
    const undecodableBegin = {
      tag: 'undecodable',
      kind: 'B',
      relationOid: undefined,
      reason: 'short',
      bytes: Buffer.from('B'),
    } as const;
    expect(() => a.handle(undecodableBegin, [])).toThrow(/undecodable pgoutput B message/);
  });
});
