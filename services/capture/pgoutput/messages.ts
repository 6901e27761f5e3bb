/**
 * pgoutput messages (protocol version 1, PostgreSQL 15) as a tagged union.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 * Column values stay in PostgreSQL's text form here; typing them is the schema mapper's job.
 */
import type { Lsn } from '../../protocol/lsn.ts';

/** A column whose TOASTed value did not change: pgoutput sends 'u' instead of the value. */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');
/**
 * A column value whose bytes cannot become a JavaScript string: not valid UTF-8 (a SQL_ASCII
 * database stores any bytes), or longer than V8's string limit. Kept as bytes so the change can
 * be dead-lettered whole instead of silently altered.
 */
export class RawValue {
  constructor(
    readonly bytes: Buffer,
    readonly reason: 'not valid UTF-8' | 'longer than a JavaScript string can be',
  ) {}
}
export type ColumnValue = string | null | typeof UNCHANGED_TOAST | RawValue;
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

/** A message the decoder could not read (kept raw, so its change can be dead-lettered). */
export interface UndecodableMessage {
  tag: 'undecodable';
  /** The message's first byte: which kind it was meant to be. */
  kind: string;
  /** The relation oid for Relation/Insert/Update/Delete messages, when the bytes hold one. */
  relationOid: number | undefined;
  reason: string;
  bytes: Buffer;
}

export type PgoutputMessage =
  | UndecodableMessage
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
