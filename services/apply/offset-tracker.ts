/**
 * What apply may commit to Kafka as its consumer group's offset (pure; the clock is passed in).
 * Model: electric-sql's flush tracker.
 *
 * The algorithm: per partition, remember for every source whose transaction is still open (its
 * first events applied into an open local transaction, its last not yet seen) the offset of that
 * transaction's first event. Everything handled is "done", but the offset safe to commit is the
 * highest done offset below the first event of every open transaction: a restart then delivers
 * such a transaction again from its start (the origin's progress skips what was committed).
 * Offsets only shorten what a restart reads again, so they are committed at most once per
 * interval per partition (each commit is a write to __consumer_offsets), and at stop.
 */
import type { Lsn } from '../protocol/lsn.ts';

interface PartitionState {
  /** Per source: its open source transaction and the offset of its first event. */
  open: Map<string, { commitLsn: Lsn; offset: bigint }>;
  /** Highest offset safe to commit (everything at or below it handled, no open transaction before it). */
  safe: bigint;
  committed: bigint;
  committedAt: number;
}

export interface OffsetCommit {
  topic: string;
  partition: number;
  /** The next offset to read (Kafka's convention: last safe + 1). */
  offset: string;
}

export class OffsetTracker {
  private readonly parts = new Map<string, PartitionState>();

  constructor(private readonly commitIntervalMs: number) {}

  /**
   * A run of `source`'s events ended at `lastOffset`. `open`: the source transaction still open
   * after the run, and the offset of its first event in this run (used when it began here).
   */
  afterRun(
    topic: string,
    partition: number,
    source: string,
    lastOffset: bigint,
    open: { commitLsn: Lsn; firstOffsetInRun: bigint } | undefined,
  ): void {
    const p = this.part(topic, partition);
    if (open === undefined) p.open.delete(source);
    else if (p.open.get(source)?.commitLsn !== open.commitLsn)
      p.open.set(source, { commitLsn: open.commitLsn, offset: open.firstOffsetInRun });
    this.done(p, lastOffset);
  }

  /** A message handled on its own (of this node, empty, or sent to the dead-letter topic). */
  handled(topic: string, partition: number, offset: bigint): void {
    this.done(this.part(topic, partition), offset);
  }

  /** The offset of the first event of `source`'s open transaction in a partition, if one is open. */
  openOffset(topic: string, partition: number, source: string): bigint | undefined {
    return this.parts.get(key(topic, partition))?.open.get(source)?.offset;
  }

  /** The commit due for a partition now (`force`: at stop, whatever the interval), if any. */
  due(topic: string, partition: number, now: number, force = false): OffsetCommit | undefined {
    const p = this.parts.get(key(topic, partition));
    if (p === undefined || p.safe <= p.committed) return undefined;
    if (!force && now - p.committedAt < this.commitIntervalMs) return undefined;
    return { topic, partition, offset: String(p.safe + 1n) };
  }

  /** Every commit due at stop. */
  allDue(now: number): OffsetCommit[] {
    const out: OffsetCommit[] = [];
    for (const k of this.parts.keys()) {
      const at = k.lastIndexOf('/');
      const c = this.due(k.slice(0, at), Number(k.slice(at + 1)), now, true);
      if (c !== undefined) out.push(c);
    }
    return out;
  }

  /** The group committed `c` at `now`. */
  committed(c: OffsetCommit, now: number): void {
    const p = this.part(c.topic, c.partition);
    const safe = BigInt(c.offset) - 1n;
    if (safe > p.committed) p.committed = safe;
    p.committedAt = now;
  }

  private done(p: PartitionState, offset: bigint): void {
    let safe = offset;
    for (const o of p.open.values()) if (o.offset - 1n < safe) safe = o.offset - 1n;
    if (safe > p.safe) p.safe = safe;
  }

  private part(topic: string, partition: number): PartitionState {
    const k = key(topic, partition);
    let p = this.parts.get(k);
    if (p === undefined) {
      p = { open: new Map(), safe: -1n, committed: -1n, committedAt: 0 };
      this.parts.set(k, p);
    }
    return p;
  }
}

function key(topic: string, partition: number): string {
  return `${topic}/${partition}`;
}
