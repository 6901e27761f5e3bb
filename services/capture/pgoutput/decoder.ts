/**
 * Bytes in, tagged pgoutput message out (pure). Layouts follow
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html (protocol
 * version 1: no streamed transactions, so no xid field before Relation/Insert/… messages).
 */
import { constants, isUtf8 } from 'node:buffer';
import { lsn } from '../../protocol/lsn.ts';
import { BinaryReader, DecodeError } from './binary-reader.ts';
import {
  type PgoutputMessage,
  RawValue,
  type ReplicaIdentity,
  type Tuple,
  UNCHANGED_TOAST,
  type UndecodableMessage,
  type UpdateMessage,
} from './messages.ts';

const MAX_STRING_LENGTH = constants.MAX_STRING_LENGTH;

export function decodePgoutput(buf: Buffer): PgoutputMessage {
  const r = new BinaryReader(buf);
  const tag = r.uint8('message tag');
  const msg = decodeBody(r, tag);
  r.end(msg.tag);
  return msg;
}

function decodeBody(r: BinaryReader, tag: number): PgoutputMessage {
  switch (tag) {
    case 0x42 /* B */:
      {
        // Int64 final LSN, Int64 commit timestamp, Int32 xid
        const finalLsn = lsn(r.uint64('final LSN'));
        const commitTime = r.int64('commit timestamp');
        return { tag: 'begin', finalLsn, commitTime, xid: r.uint32('xid') };
      }
    case 0x43 /* C */:
      {
        // Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit timestamp
        const flags = r.uint8('flags');
        const commitLsn = lsn(r.uint64('commit LSN'));
        const endLsn = lsn(r.uint64('end LSN'));
        return { tag: 'commit', flags, commitLsn, endLsn, commitTime: r.int64('commit timestamp') };
      }
    case 0x4f /* O */:
      {
        const originLsn = lsn(r.uint64('origin LSN'));
        return { tag: 'origin', originLsn, name: r.cstring('origin name') };
      }
    case 0x52 /* R */:
      {
        // Int32 oid, String namespace, String name, Int8 replica identity, Int16 ncols, columns
        const oid = r.uint32('relation oid');
        const schema = r.cstring('namespace');
        const name = r.cstring('relation name');
        const replicaIdentity = replicaIdentityOf(r.uint8('replica identity'), r.offset - 1);
        const n = r.int16('column count');
        if (n < 0) throw new DecodeError(`negative column count ${n}`, r.offset - 2);
        const columns = [];
        for (let i = 0; i < n; i++) {
          const flags = r.uint8('column flags');
          const colName = r.cstring('column name');
          const typeOid = r.uint32('column type oid');
          const typeMod = r.int32('column type modifier');
          columns.push({ name: colName, isKey: (flags & 1) === 1, typeOid, typeMod });
        }
        // pg_catalog is sent as the empty string
        return {
          tag: 'relation',
          oid,
          schema: schema === '' ? 'pg_catalog' : schema,
          name,
          replicaIdentity,
          columns,
        };
      }
    case 0x59 /* Y */:
      {
        const oid = r.uint32('type oid');
        const schema = r.cstring('type namespace');
        return {
          tag: 'type',
          oid,
          schema: schema === '' ? 'pg_catalog' : schema,
          name: r.cstring('type name'),
        };
      }
    case 0x49 /* I */:
      {
        const relationOid = r.uint32('relation oid');
        expectByte(r, 0x4e, "'N' before the new tuple");
        return { tag: 'insert', relationOid, after: tuple(r) };
      }
    case 0x55 /* U */:
      {
        const relationOid = r.uint32('relation oid');
        let before: UpdateMessage['before'] = null;
        let sub = r.uint8('update submessage');
        if (sub === 0x4b /* K */ || sub === 0x4f /* O */) {
          before = { kind: sub === 0x4b ? 'key' : 'old', tuple: tuple(r) };
          sub = r.uint8('update submessage');
        }
        if (sub !== 0x4e)
          throw new DecodeError(`expected 'N' in update, got 0x${sub.toString(16)}`, r.offset - 1);
        return { tag: 'update', relationOid, before, after: tuple(r) };
      }
    case 0x44 /* D */:
      {
        const relationOid = r.uint32('relation oid');
        const sub = r.uint8('delete submessage');
        if (sub !== 0x4b && sub !== 0x4f) {
          throw new DecodeError(`expected 'K' or 'O' in delete, got 0x${sub.toString(16)}`, r.offset - 1);
        }
        return {
          tag: 'delete',
          relationOid,
          before: { kind: sub === 0x4b ? 'key' : 'old', tuple: tuple(r) },
        };
      }
    case 0x54 /* T */:
      {
        const n = r.int32('relation count');
        if (n < 0) throw new DecodeError(`negative relation count ${n}`, r.offset - 4);
        const options = r.uint8('truncate options');
        const relationOids: number[] = [];
        for (let i = 0; i < n; i++) relationOids.push(r.uint32('relation oid'));
        return {
          tag: 'truncate',
          cascade: (options & 1) !== 0,
          restartIdentity: (options & 2) !== 0,
          relationOids,
        };
      }
    case 0x4d /* M */:
      {
        const flags = r.uint8('message flags');
        const messageLsn = lsn(r.uint64('message LSN'));
        const prefix = r.cstring('message prefix');
        const len = r.int32('message length');
        return {
          tag: 'message',
          transactional: (flags & 1) === 1,
          lsn: messageLsn,
          prefix,
          content: Buffer.from(r.bytes(len, 'message content')),
        };
      }
    default:
      throw new DecodeError(`unknown pgoutput message tag 0x${tag.toString(16)}`, 0);
  }
}

function expectByte(r: BinaryReader, want: number, what: string): void {
  const got = r.uint8(what);
  if (got !== want) throw new DecodeError(`expected ${what}, got 0x${got.toString(16)}`, r.offset - 1);
}

function replicaIdentityOf(b: number, offset: number): ReplicaIdentity {
  switch (b) {
    case 0x64:
      return 'default';
    case 0x6e:
      return 'nothing';
    case 0x66:
      return 'full';
    case 0x69:
      return 'index';
    default:
      throw new DecodeError(`unknown replica identity 0x${b.toString(16)}`, offset);
  }
}

/** A value's text, or its bytes when they cannot be a string (never a silently replaced character). */
function columnText(bytes: Buffer): string | RawValue {
  if (bytes.length > MAX_STRING_LENGTH)
    return new RawValue(Buffer.from(bytes), 'longer than a JavaScript string can be');
  if (!isUtf8(bytes)) return new RawValue(Buffer.from(bytes), 'not valid UTF-8');
  return bytes.toString('utf8');
}

/**
 * The message a buffer was meant to be, for one the decoder refused: its kind and, where the
 * layout puts one first, its relation oid.
 */
export function undecodable(buf: Buffer, reason: string): UndecodableMessage {
  const kind = buf.length > 0 ? String.fromCharCode(buf[0]!) : '?';
  const relationOid = 'RIUD'.includes(kind) && buf.length >= 5 ? buf.readUInt32BE(1) : undefined;
  return { tag: 'undecodable', kind, relationOid, reason, bytes: Buffer.from(buf) };
}

/** TupleData: Int16 ncols, then per column 'n' (null), 'u' (unchanged TOAST), 't' Int32 len + text. */
function tuple(r: BinaryReader): Tuple {
  const n = r.int16('tuple column count');
  if (n < 0) throw new DecodeError(`negative tuple column count ${n}`, r.offset - 2);
  const out: Tuple = new Array(n);
  for (let i = 0; i < n; i++) {
    const kind = r.uint8('column kind');
    switch (kind) {
      case 0x6e:
        out[i] = null;
        break;
      case 0x75:
        out[i] = UNCHANGED_TOAST;
        break;
      case 0x74: {
        const len = r.int32('column length');
        out[i] = columnText(r.bytes(len, 'column text'));
        break;
      }
      case 0x62:
        // Only sent when the subscriber asks for binary; Brabant never does.
        throw new DecodeError('binary column value, but the stream was started in text mode', r.offset - 1);
      default:
        throw new DecodeError(`unknown column kind 0x${kind.toString(16)}`, r.offset - 1);
    }
  }
  return out;
}
