/**
 * Clients waiting for a server connection, first come first served, each with the time it began
 * to wait (pure: the clock's readings are passed in). A transaction the node never read goes
 * back first in line: it was there before everything queued since.
 */
export class WaitQueue<T> {
  private readonly order: T[] = [];
  private readonly since = new Map<T, number>();

  get length(): number {
    return this.order.length;
  }

  has(item: T): boolean {
    return this.since.has(item);
  }

  /** Last in line, from `now` (one already waiting keeps its place and its time). */
  push(item: T, now: number): void {
    if (this.since.has(item)) return;
    this.since.set(item, now);
    this.order.push(item);
  }

  /** First in line, waiting from `now`. */
  pushFront(item: T, now: number): void {
    this.remove(item);
    this.since.set(item, now);
    this.order.unshift(item);
  }

  /** The one waiting longest, out of the queue. */
  shift(): T | undefined {
    const item = this.order.shift();
    if (item !== undefined) this.since.delete(item);
    return item;
  }

  remove(item: T): void {
    if (!this.since.delete(item)) return;
    this.order.splice(this.order.indexOf(item), 1);
  }

  /** Those that have waited longer than `timeoutMs` at `now`, out of the queue, in line order. */
  expire(now: number, timeoutMs: number): T[] {
    const expired = this.order.filter((item) => now - this.since.get(item)! > timeoutMs);
    for (const item of expired) this.remove(item);
    return expired;
  }
}
