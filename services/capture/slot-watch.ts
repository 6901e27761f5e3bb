/**
 * The WAL a capture's slot holds back, watched apart from the capture sessions: while Kafka (or
 * the link to the registry's primary) is away capture cannot confirm anything, its sessions keep
 * failing and restarting, and the node keeps every WAL segment since the slot's restart_lsn. This
 * watcher has a connection of its own, so the figure (brabant_capture_slot_retained_wal_bytes)
 * keeps coming — and a warning past BRABANT_CAPTURE_WAL_WARN_BYTES — exactly while the sessions
 * cannot give it. What to do about it (max_slot_wal_keep_size): docs/capture.md.
 */
import pg from 'pg';
import { slotName } from '../protocol/names.ts';
import type { Logger } from '../runtime/log.ts';
import type { CaptureMetrics } from './metrics.ts';
import type { CaptureConfig } from './session.ts';

export interface SlotWatch {
  stop(): Promise<void>;
}

/** What the watcher reads of the slot (pure decision below). */
export interface SlotSample {
  retainedBytes: number;
  /** `lost`/`unreserved` once max_slot_wal_keep_size is passed (pg_replication_slots.wal_status). */
  walStatus: string | null;
}

/** Whether a sample deserves a warning, and which (pure). */
export function slotWarning(s: SlotSample, warnBytes: number): string | undefined {
  if (s.walStatus === 'lost')
    return 'the slot lost WAL it needed (max_slot_wal_keep_size was passed): capture will stop with SLOT_LOST; resync the node (`brabant resync`)';
  if (s.walStatus === 'unreserved')
    return 'the slot is past max_slot_wal_keep_size: the WAL it needs may be removed at the next checkpoint; bring Kafka back now';
  if (warnBytes > 0 && s.retainedBytes >= warnBytes)
    return `the slot holds back ${(s.retainedBytes / 2 ** 20).toFixed(0)} MiB of WAL (warning at ${(warnBytes / 2 ** 20).toFixed(0)} MiB): capture cannot confirm to it (Kafka or the primary registry away?); the node's disk fills until it can`;
  return undefined;
}

export function watchSlot(c: CaptureConfig, metrics: CaptureMetrics, log: Logger): SlotWatch {
  const retained = metrics.retainedWal;
  const over = metrics.walWarning;
  const slot = c.slot || slotName(c.nodeId);
  let db: pg.Client | undefined;
  let lastWarned = 0;
  const sample = async () => {
    if (db === undefined) {
      const client = new pg.Client({
        connectionString: c.pgUrl,
        application_name: `brabant-capture-${c.nodeId}-slot-watch`,
      });
      client.on('error', () => {
        db = undefined;
      });
      await client.connect();
      db = client;
    }
    const r = await db.query<{ bytes: string | null; wal_status: string | null }>(
      `select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text as bytes, wal_status
         from pg_replication_slots where slot_name = $1`,
      [slot],
    );
    const row = r.rows[0];
    if (row === undefined) return;
    const s: SlotSample = { retainedBytes: Number(row.bytes ?? 0), walStatus: row.wal_status };
    retained.set(s.retainedBytes);
    const warning = slotWarning(s, c.walWarnBytes);
    over.set(warning === undefined ? 0 : 1);
    if (warning !== undefined && Date.now() - lastWarned > 60_000) {
      lastWarned = Date.now();
      log.warn(
        { code: 'SLOT_WAL_RETAINED', slot, retainedBytes: s.retainedBytes, walStatus: s.walStatus },
        warning,
      );
    }
  };
  const timer = setInterval(() => {
    sample().catch(() => {
      const stale = db;
      db = undefined;
      void stale?.end().catch(() => {});
    });
  }, c.slotWatchMs);
  return {
    async stop() {
      clearInterval(timer);
      await db?.end().catch(() => {});
    },
  };
}
