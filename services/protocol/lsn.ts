/**
 * A PostgreSQL log sequence number as a value type: a branded bigint, parsed from and formatted to
 * the `XXXXXXXX/XXXXXXXX` text form only at the edges. Positions inside a transaction are
 * `(commitLsn, index)`.
 */
import { BrabantError } from '../runtime/errors.ts';

export type Lsn = bigint & { readonly __brand: 'Lsn' };

export const ZERO_LSN = 0n as Lsn;
const MAX = (1n << 64n) - 1n;

export function lsn(value: bigint): Lsn {
  if (value < 0n || value > MAX)
    throw new BrabantError('CONFIG_INVALID', `LSN ${value} is outside 0..2^64-1`);
  return value as Lsn;
}

export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (m === null)
    throw new BrabantError('CONFIG_INVALID', `'${text}' is not an LSN (expected the form 16/B374D848)`);
  return ((BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`)) as Lsn;
}

export function formatLsn(value: Lsn): string {
  const hi = (value >> 32n).toString(16).toUpperCase();
  const lo = (value & 0xffffffffn).toString(16).toUpperCase();
  return `${hi}/${lo}`;
}

export function compareLsn(a: Lsn, b: Lsn): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}

/** A position in a node's change stream: the source transaction's commit LSN and the change's index in it. */
export interface StreamPosition {
  commitLsn: Lsn;
  index: number;
}

export function comparePosition(a: StreamPosition, b: StreamPosition): -1 | 0 | 1 {
  const c = compareLsn(a.commitLsn, b.commitLsn);
  if (c !== 0) return c;
  return a.index < b.index ? -1 : a.index > b.index ? 1 : 0;
}
