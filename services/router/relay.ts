/**
 * The proxy's client connections and the transactions they run on server connections (I/O):
 * a client's bytes go to the server connection it holds (or wait for one), the node's answers go
 * back, and each server connection's state (server-state.ts) moves with what both sides say, as
 * read by transaction-tracker.ts. Which server connection a client gets, and when, is the
 * proxy's scheduling (proxy.ts), reached through `Scheduler`.
 */
import { randomInt } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { describeError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import type { Counter, Gauge } from '../runtime/metrics.ts';
import { SQLSTATE, type Sqlstate } from '../runtime/sqlstate.ts';
import { endConnection, welcome } from './client-login.ts';
import { describeTarget } from './server-connection.ts';
import type { PooledServer } from './server-pool.ts';
import { type ServerState, servedClient } from './server-state.ts';
import { setStatements, trackedName, type Vars } from './session-params.ts';
import {
  type Answers,
  type ClientBytes,
  type ParameterChange,
  readAnswers,
  readSetupAnswers,
  type SetupAnswers,
  TransactionTracker,
} from './transaction-tracker.ts';
import { cancelRequest, copyFail, errorResponse, query } from './wire.ts';

export interface ClientConn {
  id: number;
  socket: Socket;
  /** The role it logged in as: its transactions run on that role's server connections. */
  role: string;
  /** The backend key the router gave the client, for its cancel requests. */
  pid: number;
  secret: number;
  vars: Vars;
  server: ServerConn | undefined;
  /** Bytes received while waiting for a server connection (or for its settings to be applied). */
  pending: Buffer[];
  pendingBytes: number;
  transaction: TransactionTracker;
  /** The client said Terminate or hung up: what it started finishes, answers are dropped. */
  gone: boolean;
}

export type ServerConn = PooledServer<ClientConn>;

/**
 * The most the router holds for one client, so that no client makes it buffer without end:
 * what it sent while it waits (beyond this the router stops reading from it until it has a
 * server connection; the client's kernel buffers and then the client itself wait), and a new
 * transaction's bytes kept for a resend until the node's first answer (beyond this the
 * transaction is not resent if the node dies: it fails like any transaction the node has read).
 */
const MAX_HELD_BYTES = 1024 * 1024;

/** What the relay asks of the proxy's scheduling. */
export interface Scheduler {
  /** The client needs a server connection (its bytes wait in `pending`); nothing if it waits already. */
  enqueue(c: ClientConn): void;
  /** The node read nothing of the client's transaction: it waits again, first in the queue. */
  requeue(c: ClientConn): void;
  /** The client is gone: it no longer waits, and its place under the limits is free. */
  left(c: ClientConn): void;
  /** An idle server connection: to the next waiting client, else to the pool. */
  giveBack(s: ServerConn): void;
  /** Closes a server connection on purpose. */
  close(s: ServerConn): void;
  /** A server connection is going away (the node said so, or broke off): out of use at once. */
  lose(s: ServerConn): void;
  /** A transaction ended: drains may be done. */
  released(): void;
}

export class Relay {
  private readonly clients = new Map<number, ClientConn>();
  private nextId = 1;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly log: Logger,
    private readonly metrics: { failedTx: Counter; resent: Counter; clients: Gauge },
    private readonly limits: { maxMessageBytes: number },
  ) {}

  get size(): number {
    return this.clients.size;
  }

  /** Bytes held for clients waiting for a server connection (or for their settings). */
  get pendingBytes(): number {
    let n = 0;
    for (const c of this.clients.values()) n += c.pendingBytes;
    return n;
  }

  // --- clients --------------------------------------------------------------------------------

  /** A client whose startup message is served: it is logged in and its messages are read. */
  admit(socket: Socket, role: string, vars: Vars, announced: Map<string, string>, rest: Buffer): void {
    const c: ClientConn = {
      id: this.nextId++,
      socket,
      role,
      pid: randomInt(1, 2 ** 31 - 1),
      secret: randomInt(-(2 ** 31), 2 ** 31 - 1),
      vars,
      server: undefined,
      pending: [],
      pendingBytes: 0,
      transaction: new TransactionTracker(this.limits.maxMessageBytes),
      gone: false,
    };
    this.clients.set(c.id, c);
    this.metrics.clients.set(this.clients.size);
    socket.write(welcome(announced, vars, c.pid, c.secret));
    socket.on('data', (chunk: Buffer) => this.fromClient(c, chunk));
    socket.on('close', () => this.clientGone(c));
    if (rest.length > 0) this.fromClient(c, rest);
  }

  /** A cancel request: passed on to the server connection running that client's query. */
  cancel(pid: number, secret: number): void {
    for (const c of this.clients.values()) {
      if (c.pid !== pid || c.secret !== secret) continue;
      const s = c.server;
      if (s === undefined) return;
      const sock = connect({ host: s.target.host, port: s.target.port });
      sock.on('error', () => {});
      sock.on('connect', () => sock.end(cancelRequest(s.pid, s.secret)));
      return;
    }
  }

  /** Ends a client with an error (it sees why), closing its server connection. */
  drop(c: ClientConn, sqlstate: Sqlstate, text: string): void {
    if (!c.gone) endConnection(c.socket, errorResponse('FATAL', sqlstate, text));
    c.gone = true;
    const s = c.server;
    c.server = undefined;
    if (s !== undefined) this.scheduler.close(s);
    this.forget(c);
  }

  disconnectAll(): void {
    for (const c of this.clients.values()) c.socket.destroy();
  }

  private fromClient(c: ClientConn, chunk: Buffer): void {
    if (c.gone) return;
    let read: ClientBytes;
    try {
      read = c.transaction.request(chunk);
    } catch (err) {
      this.drop(c, SQLSTATE.PROTOCOL_VIOLATION, describeError(err));
      return;
    }
    if (read.forward.length > 0) this.toServer(c, read.forward);
    if (read.terminated) {
      c.gone = true;
      endConnection(c.socket);
      this.settle(c);
    }
  }

  /** A client's bytes: to its server connection, else kept until it has one set up. */
  private toServer(c: ClientConn, bytes: Buffer): void {
    const s = c.server;
    if (s === undefined) {
      this.hold(c, bytes);
      this.scheduler.enqueue(c);
      return;
    }
    const state = s.state;
    switch (state.kind) {
      case 'setting-up':
        this.hold(c, bytes);
        return;
      case 'first-answer-due':
        s.socket.write(bytes);
        state.sent.push(bytes);
        if (byteLength(state.sent) > MAX_HELD_BYTES) s.state = { kind: 'in-transaction', client: c };
        return;
      case 'in-transaction':
        s.socket.write(bytes);
        return;
      case 'idle':
      case 'lost':
      case 'closing':
      case 'closed':
        // the proxy closed it under the client (on stop): the bytes go nowhere
        return;
      default:
        state satisfies never;
    }
  }

  /** Keeps a waiting client's bytes; past the limit, the router stops reading from it until they are sent. */
  private hold(c: ClientConn, bytes: Buffer): void {
    c.pending.push(bytes);
    c.pendingBytes += bytes.length;
    if (c.pendingBytes > MAX_HELD_BYTES) c.socket.pause();
  }

  private clientGone(c: ClientConn): void {
    if (!this.clients.has(c.id)) return;
    c.gone = true;
    this.settle(c);
  }

  /**
   * A gone client: give back its server connection once what it started is answered. What it
   * sent that no server has seen is dropped: a client that gave up (a timeout while the router
   * held it) counts its transaction as failed and may retry elsewhere; running it later would
   * apply it twice.
   */
  private settle(c: ClientConn): void {
    if (!c.gone) return;
    const s = c.server;
    if (s === undefined) {
      this.forget(c);
      return;
    }
    // its settings are still being applied: nothing of its own was sent (flush drops it)
    if (s.state.kind === 'setting-up') return;
    const settlement = c.transaction.settle();
    switch (settlement) {
      case 'wait':
        return;
      case 'give-back':
        this.detach(c, s);
        return;
      case 'close':
        // an open transaction of a client that left: closing the connection rolls it back
        c.server = undefined;
        this.scheduler.close(s);
        this.forget(c);
        return;
      case 'fail-copy': {
        // the node waits for copy data that will not come: the router ends the COPY in its place
        const fail = copyFail('the client connection was closed during COPY FROM STDIN');
        s.socket.write(fail);
        c.transaction.request(fail);
        return;
      }
      default:
        settlement satisfies never;
    }
  }

  private forget(c: ClientConn): void {
    if (this.clients.delete(c.id)) {
      this.scheduler.left(c);
      this.metrics.clients.set(this.clients.size);
    }
    // (one the router ended closes after a grace, so that its last bytes reach it)
    if (!c.socket.writableEnded) c.socket.destroy();
  }

  // --- a client on a server connection ---------------------------------------------------------

  /** The client's transaction begins on `s` (idle): its settings first, if they differ. */
  attach(c: ClientConn, s: ServerConn): void {
    c.server = s;
    const sql = setStatements(c.vars, s.vars);
    if (sql !== '') {
      s.state = { kind: 'setting-up', client: c, error: undefined };
      s.socket.write(query(sql));
      return;
    }
    this.flush(c, s);
  }

  /** Sends what the client sent while it waited: its transaction begins on `s`. */
  private flush(c: ClientConn, s: ServerConn): void {
    s.state = { kind: 'in-transaction', client: c };
    if (c.gone) {
      // it left before its transaction reached a server: that transaction does not run (settle)
      c.pending = [];
      c.pendingBytes = 0;
      c.transaction.dropUnsent();
      this.settle(c);
      return;
    }
    if (c.pending.length > 0) {
      const bytes = c.pending.length === 1 ? c.pending[0]! : Buffer.concat(c.pending);
      s.socket.write(bytes);
      // a transaction starts here (the client had none open): keep its bytes until answered
      if (c.transaction.outsideTransaction && bytes.length <= MAX_HELD_BYTES)
        s.state = { kind: 'first-answer-due', client: c, sent: [bytes] };
    }
    c.pending = [];
    c.pendingBytes = 0;
    // (a client that leaves while not read from is seen now, once its bytes are on their way)
    if (c.socket.isPaused()) c.socket.resume();
  }

  /** Gives the client's server connection back. */
  private detach(c: ClientConn, s: ServerConn): void {
    c.server = undefined;
    if (c.gone) this.forget(c);
    this.scheduler.giveBack(s);
    this.scheduler.released();
  }

  fromServer(s: ServerConn, chunk: Buffer): void {
    const state = s.state;
    switch (state.kind) {
      case 'setting-up':
        this.setupAnswered(s, state.client, chunk, state.error);
        return;
      case 'first-answer-due':
        this.answered(s, state.client, chunk, state.sent);
        return;
      case 'in-transaction':
        this.answered(s, state.client, chunk, undefined);
        return;
      case 'idle':
        // an idle server connection speaks only to say it is going away (FATAL, then close): out
        // of the pool now, not at its close event, so that no client is given it meanwhile
        this.scheduler.lose(s);
        return;
      case 'lost':
      case 'closing':
      case 'closed':
        s.socket.destroy();
        return;
      default:
        state satisfies never;
    }
  }

  /** The node's answers in a client's transaction; `sent`: its bytes, while none was answered. */
  private answered(s: ServerConn, c: ClientConn, chunk: Buffer, sent: Buffer[] | undefined): void {
    let answers: Answers;
    try {
      answers = readAnswers(s.answers, chunk, c.transaction, sent !== undefined);
    } catch (err) {
      this.drop(c, SQLSTATE.PROTOCOL_VIOLATION, `the node broke the protocol: ${describeError(err)}`);
      return;
    }
    switch (answers.kind) {
      case 'unread':
        this.resend(c, s, sent!);
        return;
      case 'client-broke':
        if (answers.text === undefined) {
          // the node's own FATAL says why: it reaches the client, then its connection ends
          if (!c.gone) endConnection(c.socket, chunk.subarray(0, answers.end));
          c.gone = true;
        }
        // (closed on purpose: the node is fine, the leader is not suspected)
        this.drop(c, SQLSTATE.PROTOCOL_VIOLATION, answers.text ?? '');
        return;
      case 'running':
        this.noteParameters(s, c, answers.parameters);
        if (answers.answered) s.state = { kind: 'in-transaction', client: c };
        if (!c.gone) c.socket.write(chunk);
        else this.settle(c);
        return;
      case 'over':
        this.noteParameters(s, c, answers.parameters);
        if (answers.end < chunk.length) {
          // Bytes behind the transaction's last answer are no longer the client's: the idle
          // backend is going away (on postmaster death it sends its FATAL right behind): lost.
          if (!c.gone) c.socket.write(chunk.subarray(0, answers.end));
          c.server = undefined;
          this.scheduler.lose(s);
          if (c.gone) this.forget(c);
          return;
        }
        if (!c.gone) c.socket.write(chunk);
        if (c.gone) this.settle(c);
        else this.detach(c, s);
        return;
      default:
        answers satisfies never;
    }
  }

  /** The node's answers to the SET statements that give it the client's settings. */
  private setupAnswered(s: ServerConn, c: ClientConn, chunk: Buffer, error: string | undefined): void {
    let answers: SetupAnswers;
    try {
      answers = readSetupAnswers(s.answers, chunk, error);
    } catch (err) {
      // (the client's transaction was not sent; a node that breaks the protocol is not retried)
      this.drop(c, SQLSTATE.PROTOCOL_VIOLATION, `the node broke the protocol: ${describeError(err)}`);
      return;
    }
    this.noteParameters(s, c, answers.parameters);
    switch (answers.kind) {
      case 'exited':
        // nothing of the client's was sent yet
        this.resend(c, s, []);
        return;
      case 'running':
        s.state = { kind: 'setting-up', client: c, error: answers.error };
        return;
      case 'done':
        if (answers.error !== undefined) {
          // the client's own settings are refused (as they would be at login on the node)
          this.drop(
            c,
            SQLSTATE.INVALID_PARAMETER_VALUE,
            `the router could not apply the client's settings: ${answers.error}`,
          );
          return;
        }
        // parameters PostgreSQL does not report back are now what the client asked for
        for (const [k, v] of c.vars) s.vars.set(k, v);
        this.flush(c, s);
        return;
      default:
        answers satisfies never;
    }
  }

  /** A setting the node reported (a SET, or the SET statements of the router) is the client's now. */
  private noteParameters(s: ServerConn, c: ClientConn, parameters: ParameterChange[]): void {
    for (const p of parameters) {
      const name = trackedName(p.name);
      if (name === undefined) continue;
      s.vars.set(name, p.value);
      c.vars.set(name, p.value);
    }
  }

  /** The socket of a server connection closed, which was in `was`: what becomes of its client. */
  serverClosed(s: ServerConn, was: ServerState<ClientConn>): void {
    const c = servedClient(was);
    if (c === undefined || c.server !== s) return;
    // lost while setting the client's parameters: nothing of the client's was sent yet
    if (was.kind === 'setting-up') this.resend(c, s, []);
    else this.serverLost(s, c);
  }

  /** The node closed a connection in the middle of a client's transaction: only the node knows its outcome. */
  private serverLost(s: ServerConn, c: ClientConn): void {
    c.server = undefined;
    if (!c.gone) {
      this.metrics.failedTx.inc({ reason: 'server_lost' });
      this.log.warn(
        { node: describeTarget(s.target), client: c.id },
        'server connection lost during a client transaction: the client is told and disconnected',
      );
    }
    this.drop(
      c,
      SQLSTATE.CONNECTION_FAILURE,
      `the connection to ${describeTarget(s.target)} was lost during the transaction (node down?); if it was committing, its outcome is unknown until the node returns`,
    );
  }

  /**
   * The server connection died before the node read any of the client's transaction: it goes
   * first in the queue, to run on the leader the router chooses next.
   */
  private resend(c: ClientConn, s: ServerConn, bytes: Buffer[]): void {
    c.server = undefined;
    this.scheduler.lose(s);
    c.pending = [...bytes, ...c.pending];
    c.pendingBytes = byteLength(c.pending);
    this.scheduler.requeue(c);
    this.metrics.resent.inc();
    this.log.info(
      { node: describeTarget(s.target), client: c.id },
      'server connection lost before the node read the transaction: it waits for the next leader',
    );
  }
}

const byteLength = (chunks: Buffer[]): number => chunks.reduce((n, b) => n + b.length, 0);
