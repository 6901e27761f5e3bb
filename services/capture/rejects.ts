/**
 * Changes capture cannot send on (pure): what a rejected change is, the raw form it is kept in,
 * and the two records made of it. The dead letter (topic brabant.deadletter, JSON) holds the raw
 * change, the reason and the fix, for a person to repair it; a marker in the change topic (a
 * Control MESSAGE with prefix `brabant.deadletter` at the change's own position) tells every
 * reader of the stream that a change is missing there, and keeps positions dense, so a restarted
 * capture's read-back skips exactly what it already handled (dead letter included).
 */
import type { Operation } from '../protocol/envelope.ts';
import { formatLsn, type Lsn } from '../protocol/lsn.ts';
import type { ErrorCode } from '../runtime/errors.ts';
import { type ColumnValue, RawValue, type Tuple, UNCHANGED_TOAST } from './pgoutput/messages.ts';

export const DEAD_LETTER_PREFIX = 'brabant.deadletter';

/** A column value as a dead letter keeps it: text, null, unchanged, or the raw bytes (base64). */
export type RawColumn = string | null | { unchangedToast: true } | { base64: string; why: string };

export interface RawChange {
  /** The pgoutput message kind (INSERT, UPDATE, DELETE, TRUNCATE, MESSAGE), or the tag byte of an undecodable one. */
  op: Operation | 'MESSAGE' | string;
  /** Column names of the relation when known (else the tuples are keyed by position). */
  columns: string[] | undefined;
  /** `key` for the old key of an update/delete, `old` for a REPLICA IDENTITY FULL old row. */
  oldKind?: 'key' | 'old';
  before: Record<string, RawColumn> | null;
  after: Record<string, RawColumn> | null;
  /** The message's bytes (hex) when it could not be decoded at all. */
  messageHex?: string;
}

export interface Rejection {
  code: ErrorCode;
  /** Names the object (table, column) and what is wrong. */
  reason: string;
  /** What a person does about it. */
  fix: string;
}

export interface RejectedChange extends Rejection {
  /** schema.table, or `relation <oid>` when the table is not known. */
  table: string;
  raw: RawChange;
}

function rawColumn(v: ColumnValue): RawColumn {
  if (v === UNCHANGED_TOAST) return { unchangedToast: true };
  if (v instanceof RawValue) return { base64: v.bytes.toString('base64'), why: v.reason };
  return v;
}

export function rawTuple(columns: string[] | undefined, t: Tuple | null): Record<string, RawColumn> | null {
  if (t === null) return null;
  return Object.fromEntries(t.map((v, i) => [columns?.[i] ?? `#${i + 1}`, rawColumn(v)]));
}

export interface DeadLetterContext {
  node: string;
  region: string;
  xid: bigint;
  commitLsn: Lsn;
  commitTs: bigint;
  index: number;
}

/** The dead letter of a rejected change: JSON value and headers (key: the node id). */
export function deadLetter(
  r: RejectedChange,
  c: DeadLetterContext,
): { value: Buffer; headers: Record<string, string> } {
  const body = {
    stage: 'capture',
    node: c.node,
    region: c.region,
    table: r.table,
    code: r.code,
    reason: r.reason,
    fix: r.fix,
    tx: {
      xid: String(c.xid),
      commitLsn: formatLsn(c.commitLsn),
      commitTs: String(c.commitTs),
      index: c.index,
    },
    change: r.raw,
  };
  return {
    value: Buffer.from(JSON.stringify(body)),
    headers: {
      'brabant.stage': 'capture',
      'brabant.source-node': c.node,
      'brabant.table': r.table,
      'brabant.reason': `${r.code}: ${r.reason}`.slice(0, 1000),
      'brabant.commit-lsn': formatLsn(c.commitLsn),
      'brabant.index': String(c.index),
    },
  };
}

/** Content of the marker in the change topic: small, and enough to find the dead letter. */
export function markerContent(r: RejectedChange): Buffer {
  return Buffer.from(
    JSON.stringify({ table: r.table, op: r.raw.op, code: r.code, reason: r.reason.slice(0, 500) }),
  );
}
