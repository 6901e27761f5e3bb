/**
 * Turns the decoded pgoutput stream into Brabant change events (pure, no I/O): numbers the events
 * of each source transaction, marks the last one, skips transactions applied from peers (they
 * carry a replication origin: loop prevention), skips what is already in Kafka (position at or
 * below `skipThrough`), and reports each source commit so the caller can confirm it once durable.
 *
 * A change that cannot be turned into an event (a value its codec refuses, bytes that are not
 * UTF-8, a table whose version could not be built, an undecodable message) becomes a `rejected`
 * event at its own position, never an exception: one bad row or table does not stop the node.
 * Only a broken stream structure (Begin/Commit/Origin out of order or unreadable) throws, since
 * going on could mis-number transactions or forward a peer's changes back to it.
 */
import type { ControlKind, Operation } from '../protocol/envelope.ts';
import { comparePosition, type Lsn, type StreamPosition } from '../protocol/lsn.ts';
import {
  type ChunkEntry,
  forwardedHighContent,
  type HighWatermark,
  parseWatermark,
  RESYNC_HIGH_PREFIX,
  RESYNC_LOW_PREFIX,
  type ResyncMark,
} from '../protocol/resync.ts';
import type { TableSchema, TextValue } from '../protocol/table-schema.ts';
import { UNCHANGED } from '../protocol/table-schema.ts';
import { BrabantError, type ErrorCode } from '../runtime/errors.ts';
import {
  type PgoutputMessage,
  pgTimestampToUnixMicros,
  RawValue,
  type Tuple,
  UNCHANGED_TOAST,
} from './pgoutput/messages.ts';
import { type RawChange, type RejectedChange, type Rejection, rawTuple } from './rejects.ts';
import { keyText, type ResyncWindows, type WindowKey } from './resync-window.ts';

export const HEARTBEAT_PREFIX = 'brabant.heartbeat';
export const DDL_PREFIX = 'brabant.ddl';

export interface TxInfo {
  xid: bigint;
  commitLsn: Lsn;
  /** Unix microseconds. */
  commitTs: bigint;
}

interface EventBase {
  tx: TxInfo;
  index: number;
  last: boolean;
}

export interface TableEvent extends EventBase {
  kind: 'table';
  table: TableSchema;
  op: Operation;
  key: Record<string, unknown> | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  /** A row (INSERT) or remembered delete (DELETE) a resync re-emits, with its original version. */
  resync?: ResyncMark;
}

export interface ControlEventOut extends EventBase {
  kind: 'control';
  control: ControlKind;
  prefix: string;
  content: Buffer;
}

export interface RejectedEvent extends EventBase {
  kind: 'rejected';
  rejected: RejectedChange;
}

export type AssembledEvent = TableEvent | ControlEventOut | RejectedEvent;

/** A table whose version could not be built: its changes are rejected until a new Relation message. */
export interface PausedTable {
  paused: true;
  schema: string;
  name: string;
  columns: string[] | undefined;
  rejection: Rejection;
}

export type TableVersion = TableSchema | PausedTable;

export type Output =
  | { type: 'event'; event: AssembledEvent }
  /**
   * A source transaction ended; once every event before this is durable, `confirmable` may be
   * confirmed: its `endLsn`, or less while a resync's watermark window is open (resync-window.ts).
   */
  | {
      type: 'commit';
      commitLsn: Lsn;
      endLsn: Lsn;
      confirmable: Lsn;
      skipped: 'origin' | 'duplicate' | null;
      events: number;
      /** Resync windows whose high watermark did not come: no longer waited for. */
      abandoned: WindowKey[];
    };

export interface AssemblerOptions {
  /** Table version by relation oid (the caller fills it when a Relation message arrives). */
  tables: Map<number, TableVersion>;
  /** Relations whose changes are not sent on (Brabant's own tables: tombstones, conflict log). */
  ignored?: Set<number>;
  /** Everything at or below this position is already committed in Kafka. */
  skipThrough?: StreamPosition;
  /** The open resync windows (resync-window.ts): what the log changes between a chunk's watermarks. */
  windows?: ResyncWindows;
}

export class Assembler {
  private tx: TxInfo | undefined;
  private fromPeer = false;
  private index = 0;
  private held: AssembledEvent | undefined;
  private readonly skipThrough: StreamPosition | undefined;
  private readonly tables: Map<number, TableVersion>;
  private readonly ignored: Set<number>;
  private readonly windows: ResyncWindows | undefined;

  constructor(opts: AssemblerOptions) {
    this.tables = opts.tables;
    this.ignored = opts.ignored ?? new Set();
    this.skipThrough = opts.skipThrough;
    this.windows = opts.windows;
  }

  get inTransaction(): boolean {
    return this.tx !== undefined;
  }

  handle(msg: PgoutputMessage, out: Output[]): void {
    switch (msg.tag) {
      case 'begin':
        if (this.tx !== undefined) throw protocolError('Begin inside a transaction');
        this.tx = {
          xid: BigInt(msg.xid),
          commitLsn: msg.finalLsn,
          commitTs: pgTimestampToUnixMicros(msg.commitTime),
        };
        this.fromPeer = false;
        this.index = 0;
        return;
      case 'origin':
        // Sent only for transactions that carry a replication origin: changes Brabant (or anyone)
        // applied from elsewhere. Never send them on, or they would loop between regions.
        this.fromPeer = true;
        return;
      case 'relation':
      case 'type':
        return;
      case 'insert':
      case 'update':
      case 'delete':
        if (this.ignored.has(msg.relationOid)) return;
        this.emit(out, this.rowChange(msg));
        return;
      case 'truncate':
        for (const oid of msg.relationOids) {
          if (this.ignored.has(oid)) continue;
          const t = this.tables.get(oid);
          if (t === undefined || 'paused' in t) {
            const raw: RawChange = { op: 'TRUNCATE', columns: t?.columns, before: null, after: null };
            this.emit(out, this.reject(oid, t, raw, t?.rejection ?? unknownRelation(oid)));
            continue;
          }
          this.windows?.noteTruncate(t.shape.schema, t.shape.name);
          this.emit(out, { kind: 'table', table: t, op: 'TRUNCATE', key: null, before: null, after: null });
        }
        return;
      case 'undecodable':
        this.undecodable(msg, out);
        return;
      case 'message': {
        // Non-transactional messages have no commit position; Brabant does not carry them.
        if (!msg.transactional) return;
        if (msg.prefix === RESYNC_LOW_PREFIX && this.windows !== undefined && this.tx !== undefined) {
          // a malformed one opens no window: its chunk's rows then keep only their versions' guard
          const w = lowWatermark(msg.content);
          if (w !== undefined) this.windows.openWindow(w, this.tx.commitTs);
        }
        const control: ControlKind =
          msg.prefix === HEARTBEAT_PREFIX ? 'HEARTBEAT' : msg.prefix === DDL_PREFIX ? 'DDL' : 'MESSAGE';
        this.emit(out, { kind: 'control', control, prefix: msg.prefix, content: msg.content });
        return;
      }
      case 'commit': {
        const tx = this.tx;
        if (tx === undefined) throw protocolError('Commit outside a transaction');
        if (tx.commitLsn !== msg.commitLsn) {
          throw protocolError(
            `Commit LSN ${msg.commitLsn} differs from the Begin's final LSN ${tx.commitLsn}`,
          );
        }
        if (this.held !== undefined) {
          this.held.last = true;
          out.push({ type: 'event', event: this.held });
          this.held = undefined;
        }
        const allSkipped = this.fromPeer
          ? 'origin'
          : this.isDuplicate(this.index - 1) && this.index > 0
            ? 'duplicate'
            : null;
        const confirmable = this.windows?.confirmable(msg.endLsn) ?? msg.endLsn;
        out.push({
          type: 'commit',
          commitLsn: msg.commitLsn,
          endLsn: msg.endLsn,
          confirmable,
          skipped: allSkipped,
          events: this.index,
          abandoned: this.windows?.noteCommit(msg.endLsn, tx.commitTs) ?? [],
        });
        this.tx = undefined;
        this.fromPeer = false;
        return;
      }
      default:
        msg satisfies never;
    }
  }

  /** An insert, update or delete as a table event, or as a rejected one with its reason. */
  private rowChange(msg: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' }>): EventBody {
    const t = this.tables.get(msg.relationOid);
    const op = msg.tag === 'insert' ? 'INSERT' : msg.tag === 'update' ? 'UPDATE' : 'DELETE';
    const old = msg.tag === 'insert' ? null : msg.before;
    const after = msg.tag === 'delete' ? null : msg.after;
    const raw = (columns: string[] | undefined): RawChange => ({
      op,
      columns,
      ...(old ? { oldKind: old.kind } : {}),
      before: rawTuple(columns, old?.tuple ?? null),
      after: rawTuple(columns, after),
    });
    if (t === undefined || 'paused' in t)
      return this.reject(
        msg.relationOid,
        t,
        raw(t?.columns),
        t?.rejection ?? unknownRelation(msg.relationOid),
      );
    const columns = t.shape.columns.map((c) => c.name);
    try {
      const oldText = old === null ? null : toText(t, old.tuple);
      const afterText = after === null ? null : toText(t, after);
      // The key of the old row when the key changed ('K'/'O'), else of the new row.
      const keySource = (oldText ?? afterText)!;
      if (this.windows !== undefined && this.windows.openCount > 0) this.noteKeys(t, oldText, afterText);
      return {
        kind: 'table',
        table: t,
        op,
        key: t.key(keySource),
        before: old?.kind === 'old' && oldText !== null ? t.row(oldText) : null,
        after: afterText === null ? null : t.row(afterText),
      };
    } catch (err) {
      return this.reject(
        msg.relationOid,
        t,
        raw(columns),
        rejectionOf(err, `${t.shape.schema}.${t.shape.name}`),
      );
    }
  }

  /** The keys a change touched, for the resync windows of its table (the old key and, if it moved, the new). */
  private noteKeys(t: TableSchema, oldText: TextValue[] | null, afterText: TextValue[] | null): void {
    const key = t.shape.columns.flatMap((c, i) => (c.isKey ? [i] : []));
    const names = key.map((i) => t.shape.columns[i]!.name);
    const of = (v: TextValue[]) =>
      keyText(
        names,
        key.map((i) => (v[i] === UNCHANGED ? null : (v[i] as string | null))),
      );
    const keys = [oldText, afterText].filter((v): v is TextValue[] => v !== null).map(of);
    this.windows!.noteChange(t.shape.schema, t.shape.name, keys);
  }

  /**
   * A resync's high watermark (the pipeline built `table` from its columns, and `mark` gives a
   * row's version): the watermark itself as a Control MESSAGE, without its rows, then each row or
   * remembered delete of the chunk that the log did not change since the low watermark, as an
   * INSERT or DELETE of the table with the row's original version.
   */
  resyncHigh(
    w: HighWatermark,
    table: TableSchema,
    mark: (entry: ChunkEntry) => ResyncMark,
    out: Output[],
  ): { sent: number; dropped: number } {
    const window = this.windows?.close(w) ?? { window: 'none' as const };
    const cols = table.shape.columns;
    const keyIdx = cols.flatMap((c, i) => (c.isKey ? [i] : []));
    const names = keyIdx.map((i) => cols[i]!.name);
    const rows = w.rows.map((entry) => {
      const given = entry.slice(2) as (string | null)[];
      let values: (string | null)[] = given;
      if (w.kind === 'tombstones') {
        values = cols.map(() => null);
        keyIdx.forEach((i, j) => {
          values[i] = given[j]!;
        });
      }
      return { entry, values };
    });
    const kept =
      window.window === 'none'
        ? rows
        : rows.filter(
            (r) =>
              !window.drop(
                keyText(
                  names,
                  keyIdx.map((i) => r.values[i]!),
                ),
              ),
          );
    const forwarded = forwardedHighContent(w, kept.length, rows.length - kept.length);
    this.emit(out, { kind: 'control', control: 'MESSAGE', prefix: RESYNC_HIGH_PREFIX, content: forwarded });
    for (const { entry, values } of kept) {
      const op: Operation = w.kind === 'rows' ? 'INSERT' : 'DELETE';
      let body: EventBody;
      try {
        body = {
          kind: 'table',
          table,
          op,
          key: table.key(values),
          before: null,
          after: op === 'INSERT' ? table.row(values) : null,
          resync: mark(entry),
        };
      } catch (err) {
        const raw: RawChange = {
          op,
          columns: cols.map((c) => c.name),
          before: null,
          after: Object.fromEntries(cols.map((c, i) => [c.name, values[i] ?? null])),
        };
        body = {
          kind: 'rejected',
          rejected: { ...rejectionOf(err, `${w.schema}.${w.name}`), table: `${w.schema}.${w.name}`, raw },
        };
      }
      this.emit(out, body);
    }
    return { sent: kept.length, dropped: rows.length - kept.length };
  }

  /** A message that cannot be taken as what its prefix says: rejected at its own position. */
  rejectMessage(prefix: string, content: Buffer, r: Rejection, out: Output[]): void {
    const raw: RawChange = {
      op: 'MESSAGE',
      columns: undefined,
      before: null,
      after: null,
      messageHex: Buffer.concat([Buffer.from(`${prefix}\u0000`), content.subarray(0, 4096)]).toString('hex'),
    };
    this.emit(out, { kind: 'rejected', rejected: { ...r, table: prefix, raw } });
  }

  private reject(oid: number, t: TableVersion | undefined, raw: RawChange, r: Rejection): EventBody {
    const table =
      t === undefined
        ? `relation ${oid}`
        : 'paused' in t
          ? `${t.schema}.${t.name}`
          : `${t.shape.schema}.${t.shape.name}`;
    return { kind: 'rejected', rejected: { ...r, table, raw } };
  }

  private undecodable(msg: Extract<PgoutputMessage, { tag: 'undecodable' }>, out: Output[]): void {
    const what = `undecodable pgoutput ${msg.kind} message (${msg.reason}): ${msg.bytes.subarray(0, 64).toString('hex')}`;
    // Without Begin, Commit or Origin the stream's transactions (and loop prevention) are unknown.
    if ('BCO'.includes(msg.kind)) throw protocolError(what);
    // Relation: the pipeline pauses the table; Type: not used.
    if (msg.kind === 'R' || msg.kind === 'Y') return;
    if (msg.relationOid !== undefined && this.ignored.has(msg.relationOid)) return;
    const t = msg.relationOid === undefined ? undefined : this.tables.get(msg.relationOid);
    const raw: RawChange = {
      op: { I: 'INSERT', U: 'UPDATE', D: 'DELETE', T: 'TRUNCATE', M: 'MESSAGE' }[msg.kind] ?? msg.kind,
      columns: undefined,
      before: null,
      after: null,
      messageHex: msg.bytes.toString('hex'),
    };
    const rejection: Rejection = {
      code: 'UNDECODABLE',
      reason: what,
      fix: 'report it with this dead letter (it names the bytes); repair the row on the peers from it',
    };
    this.emit(out, this.reject(msg.relationOid ?? 0, t, raw, rejection));
  }

  private emit(out: Output[], body: EventBody): void {
    const tx = this.tx;
    if (tx === undefined) throw protocolError(`${body.kind} change outside a transaction`);
    const index = this.index++;
    if (this.fromPeer || this.isDuplicate(index)) return;
    const event = { ...body, tx, index, last: false } as AssembledEvent;
    if (this.held !== undefined) out.push({ type: 'event', event: this.held });
    this.held = event;
  }

  private isDuplicate(index: number): boolean {
    if (this.skipThrough === undefined || this.tx === undefined) return false;
    return comparePosition({ commitLsn: this.tx.commitLsn, index }, this.skipThrough) <= 0;
  }
}

type EventBody =
  | Omit<TableEvent, 'tx' | 'index' | 'last'>
  | Omit<ControlEventOut, 'tx' | 'index' | 'last'>
  | Omit<RejectedEvent, 'tx' | 'index' | 'last'>;

function toText(t: TableSchema, tuple: Tuple): TextValue[] {
  return tuple.map((v, i) => {
    if (v === UNCHANGED_TOAST) return UNCHANGED;
    if (v instanceof RawValue) {
      const column = t.shape.columns[i]?.name ?? `#${i + 1}`;
      throw new BrabantError(
        'VALUE_UNREPRESENTABLE',
        `${t.shape.schema}.${t.shape.name}.${column}: a value of ${v.bytes.length} bytes is ${v.reason}`,
      );
    }
    return v;
  });
}

const FIXES: Partial<Record<ErrorCode, string>> = {
  VALUE_UNREPRESENTABLE:
    'the dead letter holds the raw change (bytes in base64): repair the row on the peers from it; ' +
    'for bytes that are not UTF-8, move the database to UTF8 encoding or store such values as bytea',
  CATALOG_MISMATCH:
    'restart capture after the catalog settles; repair the row on the peers from the dead letter',
};

/** A data error as the rejection of a change. Never retriable: the same change fails the same way. */
function rejectionOf(err: unknown, table: string): Rejection {
  const code: ErrorCode = err instanceof BrabantError ? err.code : 'VALUE_UNREPRESENTABLE';
  const reason = err instanceof Error ? err.message : String(err);
  return {
    code,
    reason: reason.includes(table) ? reason : `${table}: ${reason}`,
    fix: FIXES[code] ?? 'repair the row on the peers from the raw change in this dead letter',
  };
}

/** A low watermark's chunk, or undefined when its content is malformed. */
function lowWatermark(content: Buffer): WindowKey | undefined {
  try {
    const w = parseWatermark(RESYNC_LOW_PREFIX, content);
    return { resync: w.resync, chunk: w.chunk, schema: w.schema, name: w.name };
  } catch {
    return undefined;
  }
}

function unknownRelation(oid: number): Rejection {
  return {
    code: 'CATALOG_MISMATCH',
    reason: `change for relation oid ${oid} before its Relation message`,
    fix: FIXES.CATALOG_MISMATCH!,
  };
}

function protocolError(what: string): BrabantError {
  return new BrabantError('CATALOG_MISMATCH', `unexpected pgoutput sequence: ${what}`);
}
