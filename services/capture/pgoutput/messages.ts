/**
 * pgoutput messages (protocol version 1, PostgreSQL 15) as a tagged union.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 * Column values stay in PostgreSQL's text form here; typing them is the schema mapper's job.
 */
import type { Lsn } from '../../protocol/lsn.ts';

/** A column whose TOASTed value did not change: pgoutput sends 'u' instead of the value. */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');
export type ColumnValue = string | null | typeof UNCHANGED_TOAST;
export type Tuple = ColumnValue[];

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationColumn {
  name: string;
  /** Part of the replica identity (flag 1). */
  isKey: boolean;
  typeOid: number;
  typeMod: number;
}

/** Microseconds since 2000-01-01 00:00:00 UTC, PostgreSQL's own epoch. */
export type PgTimestamp = bigint;

export interface BeginMessage {
  tag: 'begin';
  finalLsn: Lsn;
  commitTime: PgTimestamp;
  xid: number;
}
export interface CommitMessage {
  tag: 'commit';
  flags: number;
  commitLsn: Lsn;
  endLsn: Lsn;
  commitTime: PgTimestamp;
}
export interface OriginMessage {
  tag: 'origin';
  originLsn: Lsn;
  name: string;
}
export interface RelationMessage {
  tag: 'relation';
  oid: number;
  schema: string;
  name: string;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
}
export interface TypeMessage {
  tag: 'type';
  oid: number;
  schema: string;
  name: string;
}
export interface InsertMessage {
  tag: 'insert';
  relationOid: number;
  after: Tuple;
}
export interface UpdateMessage {
  tag: 'update';
  relationOid: number;
  /** 'K': the old key columns only (others null); 'O': the whole old row (REPLICA IDENTITY FULL). */
  before: { kind: 'key' | 'old'; tuple: Tuple } | null;
  after: Tuple;
}
export interface DeleteMessage {
  tag: 'delete';
  relationOid: number;
  before: { kind: 'key' | 'old'; tuple: Tuple };
}
export interface TruncateMessage {
  tag: 'truncate';
  cascade: boolean;
  restartIdentity: boolean;
  relationOids: number[];
}
export interface LogicalMessage {
  tag: 'message';
  transactional: boolean;
  lsn: Lsn;
  prefix: string;
  content: Buffer;
}

export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;

/** PostgreSQL epoch (2000-01-01) in Unix microseconds. */
export const PG_EPOCH_UNIX_MICROS = 946_684_800_000_000n;

export function pgTimestampToUnixMicros(t: PgTimestamp): bigint {
  return t + PG_EPOCH_UNIX_MICROS;
}
