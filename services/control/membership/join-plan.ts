/**
 * The decisions of a join, as data (pure; join.ts does the I/O): where a join stands and what a
 * new `brabant node join` does about it, the progress line of the copy, and which entries of the
 * peer's schema dump the joining node gets.
 *
 * A join goes through three phases, recorded on the joining node (brabant.join_state):
 *   copying  schema and rows are being copied from one snapshot of the peer;
 *   copied   the copy is complete and every stream's position is set (in the same transaction
 *            as this phase): the node's services may run, and it catches up from Kafka;
 *   done     it caught up and its region's router has it.
 * A snapshot lives only as long as the connection that exported it, so a copy that stopped
 * (the command killed, the peer unreachable) cannot go on where it was: it is undone and begins
 * again from a new snapshot. Once copied, a join goes on from the catch-up.
 */

export type JoinPhase = 'copying' | 'copied' | 'done';

export interface JoinRecord {
  node: string;
  peer: string;
  phase: JoinPhase;
  rebuild: boolean;
  startedAt: string;
  /** Rows copied so far (a stopped copy says how far it got). */
  copiedRows: number;
}

export type JoinDecision =
  | { kind: 'fresh' }
  | { kind: 'restart'; why: string }
  | { kind: 'catch-up'; why: string }
  | { kind: 'joined'; why: string };

/** What a join of `node` from `peer` does, given what an earlier one left on the node. */
export function decideJoin(existing: JoinRecord | undefined, peer: string): JoinDecision {
  if (existing === undefined) return { kind: 'fresh' };
  switch (existing.phase) {
    case 'copying':
      return {
        kind: 'restart',
        why:
          `an earlier join of ${existing.node} from ${existing.peer} (begun ${existing.startedAt}) stopped during the copy, ` +
          `after ${existing.copiedRows.toLocaleString('en-US')} rows: a copy cannot go on from another snapshot, so it is undone ` +
          `and begins again from a new snapshot of ${peer}`,
      };
    case 'copied':
      return {
        kind: 'catch-up',
        why: `${existing.node} holds a complete copy of ${existing.peer} (begun ${existing.startedAt}): the join goes on from the catch-up`,
      };
    case 'done':
      return {
        kind: 'joined',
        why: `${existing.node} joined from ${existing.peer} already (begun ${existing.startedAt})`,
      };
    default:
      return existing.phase satisfies never;
  }
}

export interface CopyProgress {
  tablesDone: number;
  tables: number;
  /** The table being copied. */
  table: string | undefined;
  rows: number;
  /** The planner's estimate of all rows (pg_class.reltuples): ETA and percentage are as good as it. */
  estimatedRows: number;
  /** Local transactions written (one per distinct source transaction among the rows). */
  transactions: number;
  startedAt: number;
}

const n = (x: number) => Math.round(x).toLocaleString('en-US');

/** `copy: tables 3/7 (public.items), rows 412,000 of ~1,000,000 (41%), 35,210 rows/s, ETA 17 s` */
export function progressLine(p: CopyProgress, now: number): string {
  const seconds = Math.max((now - p.startedAt) / 1000, 0.001);
  const rate = p.rows / seconds;
  const total = Math.max(p.estimatedRows, p.rows);
  const left = total - p.rows;
  const eta = rate > 0 && left > 0 ? `, ETA ${formatSeconds(left / rate)}` : '';
  const pct = total > 0 ? ` (${Math.floor((100 * p.rows) / total)}%)` : '';
  return (
    `copy: tables ${p.tablesDone}/${p.tables}${p.table ? ` (${p.table})` : ''}, rows ${n(p.rows)} of ~${n(total)}${pct}, ` +
    `${n(rate)} rows/s in ${n(p.transactions)} transactions${eta}`
  );
}

function formatSeconds(s: number): string {
  if (s < 90) return `${Math.ceil(s)} s`;
  if (s < 5400) return `${Math.ceil(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/**
 * Whether an entry of `pg_restore -l` goes to the joining node: not the peer's event triggers
 * (capture installs the node's own; they call functions of schema brabant, which the dump leaves
 * out), nor comments on them. Publications, subscriptions and schema brabant are left out by
 * pg_dump's own options (join.ts).
 */
export function keepTocEntry(line: string): boolean {
  if (line.startsWith(';') || line.trim() === '') return true;
  return !/ EVENT TRIGGER /.test(line);
}
