import { describe, expect, it } from 'vitest';
import type { Lsn } from '../protocol/lsn.ts';
import { keyText, ResyncWindows } from './resync-window.ts';

const L = (n: number) => BigInt(n) as Lsn;
const chunk = (n: number, name = 't') => ({ resync: 'rs-1', chunk: n, schema: 'public', name });
const k = (id: string) => keyText(['id'], [id]);
const MINUTE = 60_000_000n;

describe('resync windows', () => {
  it('drop the chunk rows whose key the log changed between the watermarks, and only those', () => {
    const w = new ResyncWindows(MINUTE);
    w.noteCommit(L(100), 1n);
    w.openWindow(chunk(0), 2n);
    w.noteChange('public', 't', [k('2')]);
    w.noteChange('public', 'other', [k('3')]);
    // an update that moved a row from key 4 to key 5: both were changed
    w.noteChange('public', 't', [k('4'), k('5')]);
    const r = w.close(chunk(0));
    if (r.window !== 'closed') throw new Error('no window');
    expect(['1', '2', '3', '4', '5'].filter((id) => r.drop(k(id)))).toEqual(['2', '4', '5']);
    expect(w.openCount).toBe(0);
  });

  it('drop every row of the chunk after a truncate of its table in the window', () => {
    const w = new ResyncWindows(MINUTE);
    w.openWindow(chunk(0), 1n);
    w.noteTruncate('public', 't');
    const r = w.close(chunk(0));
    expect(r.window === 'closed' && r.drop(k('1'))).toBe(true);
  });

  it('drop nothing of a chunk whose low watermark they never saw (its rows carry their versions)', () => {
    const w = new ResyncWindows(MINUTE);
    w.noteChange('public', 't', [k('1')]);
    expect(w.close(chunk(7))).toEqual({ window: 'none' });
  });

  it('keep the slot before an open low watermark, so a restart streams the window again', () => {
    const w = new ResyncWindows(MINUTE);
    w.noteCommit(L(100), 1n);
    expect(w.confirmable(L(100))).toBe(L(100));
    w.openWindow(chunk(0), 2n); // in the transaction ending at 150
    expect(w.confirmable(L(150))).toBe(L(100));
    w.noteCommit(L(150), 2n);
    w.noteCommit(L(200), 3n);
    expect(w.confirmable(L(250))).toBe(L(100));
    w.close(chunk(0)); // in the transaction ending at 250
    expect(w.confirmable(L(250))).toBe(L(250));
  });

  it('hold nothing back when the low watermark is the session’s first transaction (the slot stays where it is)', () => {
    const w = new ResyncWindows(MINUTE);
    w.openWindow(chunk(0), 1n);
    expect(w.confirmable(L(300))).toBe(L(0));
  });

  it('abandon a window the stream has moved a while past (its high watermark never came)', () => {
    const w = new ResyncWindows(MINUTE);
    w.noteCommit(L(100), 0n);
    w.openWindow(chunk(0), 10n);
    expect(w.noteCommit(L(200), 10n + MINUTE)).toEqual([]);
    expect(w.noteCommit(L(300), 11n + MINUTE)).toEqual([chunk(0)]);
    expect(w.confirmable(L(400))).toBe(L(400));
    expect(w.close(chunk(0))).toEqual({ window: 'none' });
  });

  it('abandon a resync’s older window at its next low watermark (the command went on without a high)', () => {
    const w = new ResyncWindows(MINUTE);
    w.noteCommit(L(100), 0n);
    w.openWindow(chunk(0), 1n);
    w.noteCommit(L(200), 2n);
    w.openWindow(chunk(1), 3n);
    expect(w.openCount).toBe(1);
    expect(w.confirmable(L(300))).toBe(L(200));
  });

  it('keep windows of different resyncs (and tables) apart', () => {
    const w = new ResyncWindows(MINUTE);
    w.openWindow(chunk(0, 'a'), 1n);
    w.openWindow({ ...chunk(0, 'b'), resync: 'rs-2' }, 1n);
    w.noteChange('public', 'a', [k('1')]);
    const b = w.close({ ...chunk(0, 'b'), resync: 'rs-2' });
    const a = w.close(chunk(0, 'a'));
    expect(b.window === 'closed' && b.drop(k('1'))).toBe(false);
    expect(a.window === 'closed' && a.drop(k('1'))).toBe(true);
  });
});
