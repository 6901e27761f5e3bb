/**
 * Where a client's transaction is, read from the messages both sides send (pure: bytes in,
 * decisions out). Under transaction pooling this decides when a server connection is the
 * client's and when it can serve another one.
 *
 * A request cycle is what one ReadyForQuery answers: a simple Query, a FunctionCall, or every
 * extended-protocol message (Parse, Bind, Describe, Execute, Close) up to and including a Sync
 * (https://www.postgresql.org/docs/15/protocol-flow.html). The client's transaction is over
 * when every cycle it sent is answered, the last ReadyForQuery says idle ('I'), no
 * extended-protocol message waits for its Sync, and the client is not in the middle of a
 * message. CopyData, CopyDone, CopyFail and Flush neither start nor end a cycle: a COPY belongs
 * to the Query (or Sync) that started it.
 *
 * COPY FROM STDIN: from the node's CopyInResponse until the client's CopyDone or CopyFail, the
 * node reads the client's messages as the copy's: it ignores Sync and Flush (a Sync the client
 * sent with an extended-protocol COPY's Execute is swallowed; libpq sends another after
 * CopyDone), and anything else ends the copy with an error after which the node's answers no
 * longer match the client's cycles. So the router allows only copy messages then, and ends a
 * client that had already sent more than that behind the COPY (its connection is closed).
 *
 * A client that leaves during a COPY FROM STDIN leaves the node waiting for copy data that will
 * never come. When the COPY came from a simple Query with nothing sent behind it and the client
 * stopped between two messages, the router ends it with a CopyFail (the node answers with an
 * error and ReadyForQuery, and the connection serves the next client); otherwise it closes the
 * connection (half a message sent, or an extended-protocol COPY whose Sync the node ignored
 * during the copy: its next message would be read wrongly).
 *
 * Two more facts the proxy acts on:
 * - bytes the server sends behind the ReadyForQuery that ended the transaction are not the
 *   client's: the server connection is idle by then, and an idle backend speaks only to say it
 *   is going away (a FATAL, then it closes);
 * - when the first answer to a transaction is the backend's FATAL on postmaster death (sent when
 *   it was waiting for its client), the node read none of the transaction: it can run elsewhere.
 */
import { BrabantError } from '../runtime/errors.ts';
import { SQLSTATE } from '../runtime/sqlstate.ts';
import { MessageScanner, parseErrorFields, parseParameterStatus, type TransactionStatus } from './wire.ts';

/** Client message types that end a request cycle: each is answered by one ReadyForQuery. */
const SYNCING = new Set(['Q', 'S', 'F']);
/** Client message types that neither start nor end a cycle (copy data, copy done, copy fail, flush). */
const NEUTRAL = new Set(['d', 'c', 'f', 'H']);
const TERMINATE = 'X';
const QUERY = 'Q';
const SYNC = 'S';
/** Client messages that end a COPY FROM STDIN (copy done, copy fail). */
const COPY_END = new Set(['c', 'f']);
/** Client messages the node reads during a COPY FROM STDIN without harm: copy data, the ends, Flush and Sync (ignored). */
const DURING_COPY = new Set(['d', 'c', 'f', 'H', 'S']);

export interface ClientBytes {
  /** What goes on to the server: the chunk, or the part before a Terminate. */
  forward: Buffer;
  /** The client said Terminate: it is leaving (the router acts on it; a pooled server never sees it). */
  terminated: boolean;
}

/** What to do with the server connection of a client that left. */
export type Settlement =
  /** Answers to what it sent are still due: what it started finishes first. */
  | 'wait'
  /** Its transaction is over: the connection serves the next client. */
  | 'give-back'
  /** It left a transaction open (or a message cut short): closing the connection rolls it back. */
  | 'close'
  /** It left during a COPY FROM STDIN begun by a simple Query: a CopyFail ends it, then as 'wait'. */
  | 'fail-copy';

/** The request cycles of one client connection, from its messages and the ReadyForQuery answers. */
export class TransactionTracker {
  /** Messages that expect a ReadyForQuery (Query, Sync, FunctionCall) not yet answered. */
  private outstanding = 0;
  /** Extended-protocol messages sent since the last Sync. */
  private unsynced = false;
  /** As the last ReadyForQuery said; a new client starts outside a transaction. */
  private status: TransactionStatus = 'I';
  private requests: MessageScanner;
  /** The type of the last message that ended a cycle (Query, Sync, FunctionCall). */
  private lastCycle = '';
  /** The node said CopyInResponse and no CopyDone, CopyFail or ReadyForQuery came since. */
  private copyIn = false;

  /** `maxMessageBytes`: the longest length a client's message may declare (longer: PROTOCOL_ERROR). */
  constructor(private readonly maxMessageBytes: number) {
    this.requests = this.scanner();
  }

  /** Reads what the client sent; throws PROTOCOL_ERROR on a malformed or oversized message. */
  request(chunk: Buffer): ClientBytes {
    let forward = chunk;
    let terminated = false;
    this.requests.scan(chunk, (m, end) => {
      if (terminated) return;
      if (this.copyIn && m.type !== TERMINATE) {
        if (!DURING_COPY.has(m.type))
          throw new BrabantError(
            'PROTOCOL_ERROR',
            `a message of type '${m.type}' during COPY FROM STDIN: only copy data may come until CopyDone or CopyFail`,
          );
        // (Flush and Sync are ignored by the node during the copy: they end no cycle)
        if (COPY_END.has(m.type)) this.copyIn = false;
        return;
      }
      if (SYNCING.has(m.type)) {
        this.outstanding++;
        this.unsynced = false;
        this.lastCycle = m.type;
      } else if (m.type === TERMINATE) {
        terminated = true;
        // (its first bytes may have come in earlier chunks: held back there, see below)
        forward = chunk.subarray(0, Math.max(0, end - m.length));
      } else if (COPY_END.has(m.type)) {
        this.copyIn = false;
      } else if (!NEUTRAL.has(m.type)) {
        this.unsynced = true;
      }
    });
    // A Terminate cut short is held back: sent on, its first bytes would begin a message that the
    // node completes with whatever the connection's next client sends.
    if (!terminated && this.requests.partialType === TERMINATE)
      forward = forward.subarray(0, Math.max(0, chunk.length - this.requests.partialBytes));
    return { forward, terminated };
  }

  /** A ReadyForQuery answered one cycle; true if the transaction is over with it. */
  ready(status: TransactionStatus): boolean {
    this.outstanding = Math.max(0, this.outstanding - 1);
    this.status = status;
    // the node is ready for a new cycle: whatever COPY there was has ended
    this.copyIn = false;
    return this.over;
  }

  /**
   * The node answered CopyInResponse: it now reads the client's messages as copy data. False if
   * the client had already sent more than one cycle (or extended-protocol messages behind a
   * Query) that the node will read as copy data: its answers would no longer match.
   */
  copyInStarted(): boolean {
    const simple = this.outstanding === 1 && this.lastCycle === QUERY && !this.unsynced;
    const extendedSynced = this.outstanding === 1 && this.lastCycle === SYNC && !this.unsynced;
    const extendedUnsynced = this.outstanding === 0 && this.unsynced;
    if (!simple && !extendedSynced && !extendedUnsynced) return false;
    if (extendedSynced) {
      // the Sync sent with the COPY's Execute is swallowed: the cycle ends at the client's next one
      this.outstanding = 0;
      this.unsynced = true;
    }
    this.copyIn = true;
    return true;
  }

  /**
   * Every cycle answered, no transaction open, nothing waiting for a Sync, and the client between
   * two messages: the node holds part of a message otherwise, and the connection's next client
   * would send the rest of it.
   */
  get over(): boolean {
    return this.outstanding === 0 && this.status === 'I' && !this.unsynced && this.betweenMessages;
  }

  /** The node holds no part of a message (a Terminate cut short is held back, not sent). */
  private get betweenMessages(): boolean {
    return this.requests.atBoundary || this.requests.partialType === TERMINATE;
  }

  /** No transaction is open: what the client sends next begins one. */
  get outsideTransaction(): boolean {
    return this.status === 'I';
  }

  /** For a client that left: what becomes of its server connection. */
  settle(): Settlement {
    if (this.copyIn) {
      const simple = this.outstanding === 1 && this.lastCycle === QUERY && !this.unsynced;
      return simple && this.betweenMessages ? 'fail-copy' : 'close';
    }
    if (this.outstanding > 0) return 'wait';
    return this.over ? 'give-back' : 'close';
  }

  /** The client left before what it sent reached a server: none of it will run or be answered. */
  dropUnsent(): void {
    this.outstanding = 0;
    this.unsynced = false;
    // a message it had begun is dropped with the rest
    this.requests = this.scanner();
  }

  private scanner(): MessageScanner {
    return new MessageScanner(new Set(), {
      maxLength: this.maxMessageBytes,
      setting: 'BRABANT_ROUTER_MAX_MESSAGE_BYTES',
    });
  }
}

export interface ParameterChange {
  name: string;
  value: string;
}

/** What the server's answers during a client's transaction say. */
export type Answers =
  /** The first answer is the node's exit on postmaster death: it read nothing of the transaction. */
  | { kind: 'unread' }
  /**
   * The client broke the protocol where only the node's answers show it: the node ends the
   * session on a protocol violation (FATAL 08P01, forwarded up to byte `end`; `text` undefined),
   * or begins a COPY FROM STDIN behind which the client sent more than copy data (`text` says
   * so). Not a sign of trouble with the node: the connection is closed on purpose.
   */
  | { kind: 'client-broke'; end: number; text: string | undefined }
  /** The whole chunk is the client's and its transaction goes on; `answered`: a whole answer came. */
  | { kind: 'running'; answered: boolean; parameters: ParameterChange[] }
  /**
   * The transaction ended at byte `end` of the chunk (a ReadyForQuery): what comes before is the
   * client's; anything after is the now idle connection going away.
   */
  | { kind: 'over'; end: number; parameters: ParameterChange[] };

/**
 * Reads a chunk of the server's answers to a client's transaction, telling `tracker` of every
 * ReadyForQuery. `firstAnswerDue`: nothing of this transaction was answered yet. Throws
 * PROTOCOL_ERROR on malformed bytes.
 */
export function readAnswers(
  answers: MessageScanner,
  chunk: Buffer,
  tracker: TransactionTracker,
  firstAnswerDue: boolean,
): Answers {
  const parameters: ParameterChange[] = [];
  let end = -1;
  let unread = false;
  let answered = false;
  let broke: { end: number; text: string | undefined } | undefined;
  answers.scan(chunk, (m, at) => {
    if (end >= 0 || unread || broke !== undefined) return;
    if (firstAnswerDue && !answered && m.type === 'E' && exitedOnPostmasterDeath(m.body!)) {
      unread = true;
      return;
    }
    answered = true;
    if (m.type === 'Z') {
      if (tracker.ready(transactionStatus(m.body!))) end = at;
    } else if (m.type === 'S') parameters.push(parseParameterStatus(m.body!));
    else if (m.type === 'E' && endedOnProtocolViolation(m.body!)) broke = { end: at, text: undefined };
    else if (m.type === COPY_IN_RESPONSE && !tracker.copyInStarted())
      broke = {
        end: at - m.length,
        text: 'messages sent behind COPY FROM STDIN before its CopyInResponse are read by the node as copy data: wait for CopyInResponse, send only copy data, CopyDone or CopyFail, then the next query',
      };
  });
  if (unread) return { kind: 'unread' };
  if (broke !== undefined) return { kind: 'client-broke', ...broke };
  if (end >= 0) return { kind: 'over', end, parameters };
  return { kind: 'running', answered, parameters };
}

/** What the server's answers to the SET statements that give it a client's settings say. */
export type SetupAnswers =
  /** The node exited on postmaster death: none of the client's transaction was sent. */
  | { kind: 'exited'; parameters: ParameterChange[] }
  /** Not all answered yet; `error`: the message of an error so far. */
  | { kind: 'running'; error: string | undefined; parameters: ParameterChange[] }
  /** All answered (ReadyForQuery); `error`: the client's settings were refused. */
  | { kind: 'done'; error: string | undefined; parameters: ParameterChange[] };

/**
 * Reads a chunk of answers to the settings' SET statements; `error`: one seen in earlier chunks.
 * Throws PROTOCOL_ERROR on malformed bytes.
 */
export function readSetupAnswers(
  answers: MessageScanner,
  chunk: Buffer,
  error: string | undefined,
): SetupAnswers {
  const parameters: ParameterChange[] = [];
  let ready = false;
  let exited = false;
  answers.scan(chunk, (m) => {
    if (m.type === 'S') parameters.push(parseParameterStatus(m.body!));
    else if (m.type === 'E') {
      error = parseErrorFields(m.body!).get('M');
      exited ||= exitedOnPostmasterDeath(m.body!);
    } else if (m.type === 'Z') {
      transactionStatus(m.body!);
      ready = true;
    }
  });
  if (exited) return { kind: 'exited', parameters };
  return { kind: ready ? 'done' : 'running', error, parameters };
}

/** Server message types the proxy reads while it serves a client: ReadyForQuery, ParameterStatus, ErrorResponse. */
export const ANSWERS_READ: ReadonlySet<string> = new Set(['Z', 'S', 'E']);

const COPY_IN_RESPONSE = 'G';
const TRANSACTION_STATUSES = new Set(['I', 'T', 'E']);

function transactionStatus(body: Buffer): TransactionStatus {
  const status = body.length === 1 ? String.fromCharCode(body[0]!) : '';
  if (!TRANSACTION_STATUSES.has(status))
    throw new BrabantError(
      'PROTOCOL_ERROR',
      `ReadyForQuery with a body of ${body.length} byte(s) (${JSON.stringify(body.toString('latin1'))}); expected one of I, T, E`,
    );
  return status as TransactionStatus;
}

/** A backend's FATAL on a protocol violation by its client: it ends the session because of the client. */
function endedOnProtocolViolation(errorBody: Buffer): boolean {
  const f = parseErrorFields(errorBody);
  return f.get('V') === 'FATAL' && f.get('C') === SQLSTATE.PROTOCOL_VIOLATION;
}

/**
 * A backend's FATAL on postmaster death, sent when it was waiting to read from the client
 * (PostgreSQL's secure_read): it read nothing more. Matched on severity, SQLSTATE and message,
 * so a localized server (lc_messages) falls back to failing the transaction.
 */
export function exitedOnPostmasterDeath(errorBody: Buffer): boolean {
  const f = parseErrorFields(errorBody);
  return (
    f.get('V') === 'FATAL' &&
    f.get('C') === SQLSTATE.ADMIN_SHUTDOWN &&
    /postmaster exit/.test(f.get('M') ?? '')
  );
}
