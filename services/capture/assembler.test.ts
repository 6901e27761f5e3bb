import { describe, expect, it } from 'vitest';
import { lsn } from '../protocol/lsn.ts';
import { UNCHANGED } from '../protocol/table-schema.ts';
import { Assembler, type Output } from './assembler.ts';
import { UNCHANGED_TOAST } from './pgoutput/messages.ts';
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
      ? `${o.event.kind === 'table' ? o.event.op : o.event.control}@${o.event.tx.commitLsn}#${o.event.index}${o.event.last ? '!' : ''}`
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
    expect(first.type === 'event' && first.event.kind === 'table' && first.event.key).toEqual({ id: 1n });
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
    expect(ev(1).key).toEqual({ id: 1n });
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
    expect(() => run(tx(100n, [{ tag: 'insert', relationOid: 999, after: ['1'] }]))).toThrow(
      /relation oid 999 before its Relation/,
    );
  });
});
