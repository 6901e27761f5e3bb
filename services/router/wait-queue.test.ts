import { describe, expect, it } from 'vitest';
import { WaitQueue } from './wait-queue.ts';

describe('clients waiting for a server connection', () => {
  it('are served first come first served; one already waiting keeps its place and its time', () => {
    const q = new WaitQueue<string>();
    q.push('a', 0);
    q.push('b', 10);
    q.push('a', 20);
    expect(q.length).toBe(2);
    expect(q.shift()).toBe('a');
    expect(q.has('a')).toBe(false);
    expect(q.shift()).toBe('b');
    expect(q.shift()).toBeUndefined();
  });

  it('expire once they waited longer than the timeout by the clock passed in, in line order', () => {
    const q = new WaitQueue<string>();
    q.push('a', 1000);
    q.push('b', 1400);
    q.push('c', 1600);
    expect(q.expire(2500, 1500)).toEqual([]);
    expect(q.expire(2501, 1500)).toEqual(['a']);
    expect(q.expire(3200, 1500)).toEqual(['b', 'c']);
    expect(q.length).toBe(0);
  });

  it('a transaction the node never read goes first, its wait counted anew', () => {
    const q = new WaitQueue<string>();
    q.push('a', 0);
    q.push('b', 0);
    q.pushFront('c', 1000);
    expect(q.expire(1600, 1500)).toEqual(['a', 'b']);
    expect(q.shift()).toBe('c');
  });

  it('a client that leaves no longer waits', () => {
    const q = new WaitQueue<string>();
    q.push('a', 0);
    q.push('b', 0);
    q.remove('a');
    q.remove('x');
    expect(q.length).toBe(1);
    expect(q.shift()).toBe('b');
  });
});
