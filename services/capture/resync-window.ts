/**
 * The watermark windows of a resync in capture's stream (pure; docs/capture.md, "Resync").
 *
 * `brabant resync` writes, per chunk, a low watermark into the node's WAL, then in one
 * transaction reads the chunk and writes it in a high watermark. Every change the log holds
 * between the two (in commit order) may be newer than what the chunk read, so a chunk row whose
 * key such a change touched is dropped: the log's event carries that row's newer state. This is
 * DBLog's rule; this module is its bookkeeping:
 *
 * - `open` at a low watermark: the window starts; `noteChange`/`noteTruncate` record what the log
 *   changes in the window's table; `close` at the high watermark answers what to drop (the keys
 *   touched, or everything after a TRUNCATE of the table). A high watermark without an open
 *   window (its low was in an abandoned window) drops nothing: its rows carry their versions, so
 *   a peer still decides each right; only a reader that ignores versions could see a row older
 *   than an event before it.
 * - The slot must not be confirmed past a low watermark whose window is open, or a capture that
 *   restarts between the two would stream the high watermark without the changes before it:
 *   `confirmable` holds the durable position at the end of the last transaction before the
 *   oldest open low (a restart then streams the low again; the read-back skips what Kafka has).
 * - A window whose high never comes (the command stopped between the two) is abandoned once the
 *   stream has moved `maxOpenMicros` of commit time past its low, or at the next low of the same
 *   resync, so it never holds the slot back for long. Decisions use the stream's own commit
 *   times, never the clock, so a restarted capture drops exactly what the first run dropped and
 *   its events keep their positions.
 */
import type { Lsn } from '../protocol/lsn.ts';

export interface WindowKey {
  resync: string;
  chunk: number;
  schema: string;
  name: string;
}

interface OpenWindow extends WindowKey {
  openedAt: bigint;
  /** End LSN the slot may be confirmed to while this window is open. */
  floor: Lsn;
  keys: Set<string>;
  truncated: boolean;
}

export type CloseResult =
  /** No window was open for this chunk: nothing is dropped. */
  { window: 'none' } | { window: 'closed'; drop: (keyText: string) => boolean };

/** The identity of a row's key for the windows: its key columns' names and text values, in column order. */
export function keyText(columns: string[], values: (string | null)[]): string {
  return JSON.stringify([columns, values]);
}

export class ResyncWindows {
  private readonly open = new Map<string, OpenWindow>();
  private lastEnd: Lsn | undefined;

  constructor(private readonly maxOpenMicros: bigint) {}

  get openCount(): number {
    return this.open.size;
  }

  /** A low watermark in the transaction committed at `commitTs` (after `noteCommit` of the one before). */
  openWindow(w: WindowKey, commitTs: bigint): void {
    for (const [id, o] of this.open) if (o.resync === w.resync) this.open.delete(id);
    this.open.set(id(w), {
      ...w,
      openedAt: commitTs,
      floor: this.lastEnd ?? (0n as Lsn),
      keys: new Set(),
      truncated: false,
    });
  }

  /** A change of a row of `schema.name` in the log (the key it had and, if it changed, the key it has). */
  noteChange(schema: string, name: string, keys: string[]): void {
    if (this.open.size === 0) return;
    for (const o of this.open.values())
      if (o.schema === schema && o.name === name) for (const k of keys) o.keys.add(k);
  }

  noteTruncate(schema: string, name: string): void {
    for (const o of this.open.values()) if (o.schema === schema && o.name === name) o.truncated = true;
  }

  /** The high watermark of chunk `w`: what of its rows the log changed meanwhile. */
  close(w: WindowKey): CloseResult {
    const o = this.open.get(id(w));
    if (o === undefined) return { window: 'none' };
    this.open.delete(id(w));
    if (o.truncated) return { window: 'closed', drop: () => true };
    return { window: 'closed', drop: (k) => o.keys.has(k) };
  }

  /**
   * A source transaction ended: windows open longer than the limit (in the stream's commit
   * time) are abandoned. Returns them, for a log line.
   */
  noteCommit(endLsn: Lsn, commitTs: bigint): WindowKey[] {
    this.lastEnd = endLsn;
    const abandoned: WindowKey[] = [];
    for (const [k, o] of this.open) {
      if (commitTs - o.openedAt > this.maxOpenMicros) {
        this.open.delete(k);
        abandoned.push({ resync: o.resync, chunk: o.chunk, schema: o.schema, name: o.name });
      }
    }
    return abandoned;
  }

  /** How far the slot may be confirmed once everything up to `endLsn` is in Kafka. */
  confirmable(endLsn: Lsn): Lsn {
    let at = endLsn;
    for (const o of this.open.values()) if (o.floor < at) at = o.floor;
    return at;
  }
}

function id(w: WindowKey): string {
  return `${w.resync}\u0000${w.chunk}`;
}
