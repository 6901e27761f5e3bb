/**
 * Turns the decoded pgoutput stream into Brabant change events (pure, no I/O): numbers the events
 * of each source transaction, marks the last one, skips transactions applied from peers (they
 * carry a replication origin: loop prevention), skips what is already in Kafka (position at or
 * below `skipThrough`), and reports each source commit so the caller can confirm it once durable.
 */
import type { ControlKind, Operation } from '../protocol/envelope.ts';
import { comparePosition, type Lsn, type StreamPosition } from '../protocol/lsn.ts';
import type { TableSchema, TextValue } from '../protocol/table-schema.ts';
import { UNCHANGED } from '../protocol/table-schema.ts';
import { BrabantError } from '../runtime/errors.ts';
import {
  type PgoutputMessage,
  pgTimestampToUnixMicros,
  type Tuple,
  UNCHANGED_TOAST,
} from './pgoutput/messages.ts';

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
}

export interface ControlEventOut extends EventBase {
  kind: 'control';
  control: ControlKind;
  prefix: string;
  content: Buffer;
}

export type AssembledEvent = TableEvent | ControlEventOut;

export type Output =
  | { type: 'event'; event: AssembledEvent }
  /** A source transaction ended; once every event before this is durable, `endLsn` may be confirmed. */
  | { type: 'commit'; commitLsn: Lsn; endLsn: Lsn; skipped: 'origin' | 'duplicate' | null; events: number };

export interface AssemblerOptions {
  /** Table version by relation oid (the caller fills it when a Relation message arrives). */
  tables: Map<number, TableSchema>;
  /** Relations whose changes are not sent on (Brabant's own tables: tombstones, conflict log). */
  ignored?: Set<number>;
  /** Everything at or below this position is already committed in Kafka. */
  skipThrough?: StreamPosition;
}

export class Assembler {
  private tx: TxInfo | undefined;
  private fromPeer = false;
  private index = 0;
  private held: AssembledEvent | undefined;
  private readonly skipThrough: StreamPosition | undefined;
  private readonly tables: Map<number, TableSchema>;
  private readonly ignored: Set<number>;

  constructor(opts: AssemblerOptions) {
    this.tables = opts.tables;
    this.ignored = opts.ignored ?? new Set();
    this.skipThrough = opts.skipThrough;
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
      case 'insert': {
        if (this.ignored.has(msg.relationOid)) return;
        const t = this.table(msg.relationOid);
        const after = toText(msg.after);
        this.emit(out, {
          kind: 'table',
          table: t,
          op: 'INSERT',
          key: t.key(after),
          before: null,
          after: t.row(after),
        });
        return;
      }
      case 'update': {
        if (this.ignored.has(msg.relationOid)) return;
        const t = this.table(msg.relationOid);
        const after = toText(msg.after);
        const old = msg.before === null ? null : toText(msg.before.tuple);
        // The key of the old row when the key changed ('K'/'O'), else of the new row.
        const keySource = old ?? after;
        this.emit(out, {
          kind: 'table',
          table: t,
          op: 'UPDATE',
          key: t.key(keySource),
          before: msg.before?.kind === 'old' && old !== null ? t.row(old) : null,
          after: t.row(after),
        });
        return;
      }
      case 'delete': {
        if (this.ignored.has(msg.relationOid)) return;
        const t = this.table(msg.relationOid);
        const old = toText(msg.before.tuple);
        this.emit(out, {
          kind: 'table',
          table: t,
          op: 'DELETE',
          key: t.key(old),
          before: msg.before.kind === 'old' ? t.row(old) : null,
          after: null,
        });
        return;
      }
      case 'truncate':
        for (const oid of msg.relationOids) {
          if (this.ignored.has(oid)) continue;
          this.emit(out, {
            kind: 'table',
            table: this.table(oid),
            op: 'TRUNCATE',
            key: null,
            before: null,
            after: null,
          });
        }
        return;
      case 'message': {
        // Non-transactional messages have no commit position; Brabant does not carry them.
        if (!msg.transactional) return;
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
        out.push({
          type: 'commit',
          commitLsn: msg.commitLsn,
          endLsn: msg.endLsn,
          skipped: allSkipped,
          events: this.index,
        });
        this.tx = undefined;
        this.fromPeer = false;
        return;
      }
      default:
        msg satisfies never;
    }
  }

  private table(oid: number): TableSchema {
    const t = this.tables.get(oid);
    if (t === undefined)
      throw new BrabantError(
        'CATALOG_MISMATCH',
        `change for relation oid ${oid} before its Relation message`,
      );
    return t;
  }

  private emit(
    out: Output[],
    body: Omit<TableEvent, 'tx' | 'index' | 'last'> | Omit<ControlEventOut, 'tx' | 'index' | 'last'>,
  ): void {
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

function toText(t: Tuple): TextValue[] {
  return t.map((v) => (v === UNCHANGED_TOAST ? UNCHANGED : v));
}

function protocolError(what: string): BrabantError {
  return new BrabantError('CATALOG_MISMATCH', `unexpected pgoutput sequence: ${what}`);
}
