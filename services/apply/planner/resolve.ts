/**
 * Conflict resolution: last writer wins per row, by original commit timestamp, ties broken by
 * node id (pure). A row's version is where and when its current content was first committed
 * (`pg_xact_commit_timestamp_origin(xmin)`); a deleted key's version is its tombstone's. A version
 * PostgreSQL no longer knows (frozen or too old xmin) counts as the oldest. Conflict kinds follow
 * EDB PGD's names.
 */

export interface Version {
  /** Unix microseconds of the original commit. */
  ts: bigint;
  node: string;
}

export type ConflictKind =
  | 'insert_exists'
  | 'update_differing'
  | 'update_origin_change'
  | 'update_missing'
  | 'update_recently_deleted'
  | 'delete_missing'
  | 'delete_recently_updated'
  | 'multiple_unique_conflicts'
  | 'source_column_missing'
  | 'target_column_missing'
  | 'target_table_missing'
  /** A DDL failed on this node: its origin's stream is paused there until resolved. */
  | 'ddl_failed';

/** merge: a policy kept parts of both (column_lww, delta); custom: the table's resolver function decided. */
export type Resolution = 'apply_remote' | 'keep_local' | 'skip' | 'merge' | 'custom';

export type LocalState =
  /** The key exists; version null = unknown (frozen xmin): oldest. */
  | { kind: 'row'; version: Version | null }
  /** The key does not exist; its tombstone's version if a delete is remembered. */
  | { kind: 'absent'; tombstone: Version | null };

export interface Incoming {
  op: 'INSERT' | 'UPDATE' | 'DELETE';
  version: Version;
  /** The new row has every column (no unchanged-TOAST marker), so it can be inserted whole. */
  complete: boolean;
  /** With REPLICA IDENTITY FULL: whether the sent old row equals the local row (undefined: not sent). */
  beforeMatchesLocal?: boolean;
}

export type Action =
  /** Insert the new row. */
  | 'insert'
  /** Overwrite the existing row with the new one (the present columns). */
  | 'update'
  /** Delete the row and remember the delete (tombstone). */
  | 'delete'
  /** Nothing to delete, but remember the delete (tombstone) so an older change cannot resurrect it. */
  | 'tombstone'
  /** The table's custom resolver function decides what the row becomes (policy.ts). */
  | 'custom'
  | 'skip';

export interface Decision {
  action: Action;
  conflict?: { kind: ConflictKind; resolution: Resolution };
}

/** a is newer than b (a version PostgreSQL no longer knows is the oldest). */
export function isNewer(a: Version, b: Version | null): boolean {
  if (b === null) return true;
  if (a.ts !== b.ts) return a.ts > b.ts;
  return a.node > b.node;
}

function same(a: Version, b: Version | null): boolean {
  return b !== null && a.ts === b.ts && a.node === b.node;
}

export function resolve(local: LocalState, incoming: Incoming): Decision {
  const v = incoming.version;
  switch (incoming.op) {
    case 'INSERT': {
      if (local.kind === 'absent') {
        if (local.tombstone !== null && !isNewer(v, local.tombstone)) {
          return { action: 'skip', conflict: { kind: 'update_recently_deleted', resolution: 'keep_local' } };
        }
        return { action: 'insert' };
      }
      if (same(v, local.version)) return { action: 'skip' };
      return isNewer(v, local.version)
        ? { action: 'update', conflict: { kind: 'insert_exists', resolution: 'apply_remote' } }
        : { action: 'skip', conflict: { kind: 'insert_exists', resolution: 'keep_local' } };
    }
    case 'UPDATE': {
      if (local.kind === 'absent') {
        if (local.tombstone !== null && !isNewer(v, local.tombstone)) {
          return { action: 'skip', conflict: { kind: 'update_recently_deleted', resolution: 'keep_local' } };
        }
        return incoming.complete
          ? { action: 'insert', conflict: { kind: 'update_missing', resolution: 'apply_remote' } }
          : { action: 'skip', conflict: { kind: 'update_missing', resolution: 'skip' } };
      }
      if (same(v, local.version)) return { action: 'skip' };
      const wins = isNewer(v, local.version);
      const resolution: Resolution = wins ? 'apply_remote' : 'keep_local';
      const action: Action = wins ? 'update' : 'skip';
      // The old row sent (REPLICA IDENTITY FULL) is not the local one: the most telling kind.
      if (incoming.beforeMatchesLocal === false)
        return { action, conflict: { kind: 'update_differing', resolution } };
      if (local.version !== null && local.version.node !== v.node) {
        return { action, conflict: { kind: 'update_origin_change', resolution } };
      }
      return { action };
    }
    case 'DELETE': {
      if (local.kind === 'absent') {
        const newerThanTombstone = isNewer(v, local.tombstone);
        return {
          action: newerThanTombstone ? 'tombstone' : 'skip',
          conflict: { kind: 'delete_missing', resolution: 'skip' },
        };
      }
      if (isNewer(v, local.version)) return { action: 'delete' };
      return { action: 'skip', conflict: { kind: 'delete_recently_updated', resolution: 'keep_local' } };
    }
    default:
      return incoming.op satisfies never;
  }
}
