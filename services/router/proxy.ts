/**
 * The router's data path (I/O): a PostgreSQL-protocol proxy with transaction pooling in front of
 * the region's write leader. It replaces pgbouncer because pgbouncer fails new transactions
 * ("server login has been failing") in the milliseconds after the leader dies, before any
 * control loop can pause it; here the part that sees a server connection fail is the part that
 * decides what clients see.
 *
 * - A client gets a server connection for one transaction (from its first message until
 *   ReadyForQuery says idle with nothing more pending) and gives it back after.
 * - While the proxy is held (`hold`, for a switchover) or suspects the leader (a server
 *   connection was lost or could not be opened), new transactions wait instead of failing.
 *   Only transactions already running on a lost server connection fail: their outcome is known
 *   only to the node that died.
 * - `drain` waits until no transaction is running; `repoint` sends new transactions to another
 *   node and closes pooled connections to the old one.
 */
import { randomInt } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { BrabantError, describeError, isBrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import type { MetricsRegistry } from '../runtime/metrics.ts';
import { describeTarget, openServer, type Target } from './server-connection.ts';
import { clientVars, DEFAULT, serverVars, setStatements, trackedName, type Vars } from './session-params.ts';
import {
  authenticationOk,
  backendKeyData,
  cancelRequest,
  errorResponse,
  MessageScanner,
  parameterStatus,
  parseErrorFields,
  parseParameterStatus,
  query,
  readyForQuery,
  StartupReader,
  type TransactionStatus,
  terminate,
} from './wire.ts';

export interface ProxySettings {
  port: number;
  /** The database name clients use. */
  database: string;
  poolSize: number;
  connectTimeoutMs: number;
  /** Longest a transaction waits for a server connection before it is refused. */
  waitTimeoutMs: number;
}

interface ServerConn {
  socket: Socket;
  target: Target;
  generation: number;
  pid: number;
  secret: number;
  vars: Vars;
  scanner: MessageScanner;
  client: ClientConn | undefined;
  /** Running the SET statements that give it its client's settings; errors seen meanwhile. */
  settingUp: boolean;
  setupError: string | undefined;
  /**
   * The bytes of a transaction begun on this connection while nothing of it has been answered:
   * if the first answer is the backend's exit on postmaster death, the node never read them and
   * the transaction is sent again to the next leader instead of failing.
   */
  unanswered: Buffer[] | undefined;
  closing: boolean;
}

interface ClientConn {
  id: number;
  socket: Socket;
  pid: number;
  secret: number;
  vars: Vars;
  server: ServerConn | undefined;
  /** Bytes received while waiting for a server connection. */
  pending: Buffer[];
  waitingSince: number | undefined;
  scanner: MessageScanner;
  /** Messages that expect a ReadyForQuery (Query, Sync, FunctionCall) not yet answered. */
  outstanding: number;
  /** Extended-protocol messages sent since the last Sync. */
  unsynced: boolean;
  status: TransactionStatus;
  /** The client said Terminate or hung up: what it started finishes, answers are dropped. */
  gone: boolean;
}

/** How long a client has to send its startup message. */
const LOGIN_TIMEOUT_MS = 10_000;
/** The least time between a failed server connection attempt and the next. */
const OPEN_RETRY_MS = 100;

/** Message types that end a request cycle: each is answered by one ReadyForQuery. */
const SYNCING = new Set(['Q', 'S', 'F']);
/** Message types that neither start nor end a cycle (copy data, flush). */
const NEUTRAL = new Set(['d', 'c', 'f', 'H']);

export class TransactionProxy {
  private server: Server | undefined;
  private target: Target = { host: '', port: 0, dbname: '', user: '' };
  private generation = 0;
  private readonly idle: ServerConn[] = [];
  private readonly all = new Set<ServerConn>();
  private opening = 0;
  private readonly waiting: ClientConn[] = [];
  private readonly clients = new Map<number, ClientConn>();
  private nextId = 1;
  private held = false;
  /** After a failed open, the next waits until then (a node answering checks but refusing the pool must not spin). */
  private openRetryAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private suspectSince: number | undefined;
  /** Reported by the first server connection: announced to clients, the defaults of their settings. */
  private announced = new Map<string, string>();
  private defaults: Vars = new Map();
  private drained: (() => void)[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private readonly failedTx;
  private readonly resent;
  private readonly gauges;

  constructor(
    private readonly s: ProxySettings,
    private readonly log: Logger,
    metrics: MetricsRegistry,
    /** A server connection to the current target was lost or could not be opened. */
    private readonly onSuspect: (target: Target, reason: string) => void,
  ) {
    this.failedTx = metrics.counter(
      'brabant_router_failed_transactions_total',
      'Client transactions the router failed, by reason (server_lost: running on a node that died)',
    );
    this.resent = metrics.counter(
      'brabant_router_transactions_resent_total',
      'Transactions sent again to the next server connection because the node exited (postmaster death) before reading them',
    );
    this.gauges = {
      clients: metrics.gauge('brabant_router_clients', 'Client connections'),
      waiting: metrics.gauge('brabant_router_clients_waiting', 'Clients waiting for a server connection'),
      servers: metrics.gauge('brabant_router_server_connections', 'Server connections to the leader'),
    };
  }

  /** Opens one server connection to the leader (to learn its parameters), then listens on 127.0.0.1. */
  async start(leader: Target): Promise<void> {
    this.target = leader;
    const first = await this.open();
    this.announced = new Map(first.announced);
    // a copy: the connection's own settings change with the clients it serves
    this.defaults = new Map(first.vars);
    this.pool(first);
    const server = createServer({ noDelay: true, keepAlive: true }, (socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new BrabantError(
                'PORT_IN_USE',
                `router port 127.0.0.1:${this.s.port} is taken: set BRABANT_ROUTER_PORT`,
              )
            : err,
        ),
      );
      server.listen(this.s.port, '127.0.0.1', () => resolve());
    });
    this.sweeper = setInterval(() => this.expireWaits(), 100);
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    clearTimeout(this.retryTimer);
    const closed = new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    for (const c of this.clients.values()) c.socket.destroy();
    for (const s of this.all) this.closeServer(s);
    await closed;
  }

  /** New transactions wait (in flight ones go on) until `release`. */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.dispatch();
  }

  /** The leader answered a health check begun after the suspicion: new transactions go on. */
  trust(): void {
    this.suspectSince = undefined;
    this.dispatch();
  }

  /** When the proxy began to suspect the leader (undefined: it does not). */
  get suspectedSince(): number | undefined {
    return this.suspectSince;
  }

  /** Resolves once no transaction is running on any server connection. */
  drain(timeoutMs: number): Promise<void> {
    if (this.busyServers() === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drained = this.drained.filter((f) => f !== done);
        reject(
          new BrabantError(
            'TIMEOUT',
            `${this.busyServers()} transaction(s) still running after ${timeoutMs} ms (long transactions hold a switchover)`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.drained.push(done);
    });
  }

  /** New transactions go to `target`; connections to the old one close as soon as they are idle. */
  repoint(target: Target): void {
    this.target = target;
    this.generation++;
    this.suspectSince = undefined;
    for (const s of this.idle.splice(0)) this.closeServer(s);
    this.dispatch();
  }

  stats() {
    return {
      clients: this.clients.size,
      waiting: this.waiting.length,
      servers: this.all.size,
      busy: this.busyServers(),
      held: this.held,
      suspectSince: this.suspectSince,
      target: describeTarget(this.target),
    };
  }

  // --- clients --------------------------------------------------------------------------------

  private accept(socket: Socket): void {
    const reader = new StartupReader();
    socket.on('error', () => {});
    // a connection that never completes its startup does not stay open
    const login = setTimeout(() => socket.destroy(), LOGIN_TIMEOUT_MS);
    socket.once('close', () => clearTimeout(login));
    const onStartup = (chunk: Buffer) => {
      try {
        reader.push(chunk);
        for (;;) {
          const p = reader.next();
          if (p === undefined) return;
          switch (p.kind) {
            case 'ssl':
            case 'gssenc':
              socket.write('N');
              continue;
            case 'cancel':
              this.cancel(p.pid, p.secret);
              socket.destroy();
              return;
            case 'startup': {
              clearTimeout(login);
              socket.off('data', onStartup);
              this.admit(socket, p.params, reader.rest());
              return;
            }
            default:
              return p satisfies never;
          }
        }
      } catch (err) {
        socket.end(errorResponse('FATAL', '08P01', describeError(err)));
      }
    };
    socket.on('data', onStartup);
  }

  private admit(socket: Socket, params: Map<string, string>, rest: Buffer): void {
    const admitted = this.admission(params);
    if ('sqlstate' in admitted) {
      socket.end(errorResponse('FATAL', admitted.sqlstate, admitted.text));
      return;
    }
    const vars = admitted.vars;
    const c: ClientConn = {
      id: this.nextId++,
      socket,
      pid: randomInt(1, 2 ** 31 - 1),
      secret: randomInt(-(2 ** 31), 2 ** 31 - 1),
      vars,
      server: undefined,
      pending: [],
      waitingSince: undefined,
      scanner: new MessageScanner(new Set()),
      outstanding: 0,
      unsynced: false,
      status: 'I',
      gone: false,
    };
    this.clients.set(c.id, c);
    this.publish();
    const hello: Buffer[] = [authenticationOk()];
    for (const [k, v] of this.announced) {
      const own = vars.get(k);
      hello.push(parameterStatus(k, own === undefined || own === DEFAULT ? v : own));
    }
    hello.push(backendKeyData(c.pid, c.secret), readyForQuery('I'));
    socket.write(Buffer.concat(hello));
    socket.on('data', (chunk: Buffer) => this.fromClient(c, chunk));
    socket.on('close', () => this.clientGone(c));
    if (rest.length > 0) this.fromClient(c, rest);
  }

  /** Whether a startup message is served, and the client's settings if it is. */
  private admission(params: Map<string, string>): { vars: Vars } | { sqlstate: string; text: string } {
    const database = params.get('database') ?? params.get('user');
    if (database !== this.s.database)
      return {
        sqlstate: '3D000',
        text: `database "${database}" is not served by this router: connect to "${this.s.database}"`,
      };
    if (params.get('user') !== this.target.user)
      return {
        sqlstate: '28000',
        text: `role "${params.get('user')}" is not served by this router: connect as "${this.target.user}"`,
      };
    if (params.has('replication'))
      return {
        sqlstate: '08P01',
        text: 'replication connections are not served by the router: connect to a node',
      };
    try {
      return { vars: clientVars(params, this.defaults) };
    } catch (err) {
      return { sqlstate: '08P01', text: (err as Error).message };
    }
  }

  private fromClient(c: ClientConn, chunk: Buffer): void {
    if (c.gone) return;
    let forward = chunk;
    let terminated = false;
    try {
      c.scanner.scan(chunk, (m, end) => {
        if (terminated) return;
        if (SYNCING.has(m.type)) {
          c.outstanding++;
          c.unsynced = false;
        } else if (m.type === 'X') {
          terminated = true;
          // Terminate is the router's to act on, never a pooled server's: cut it off
          forward = chunk.subarray(0, Math.max(0, end - 5));
        } else if (!NEUTRAL.has(m.type)) {
          c.unsynced = true;
        }
      });
    } catch (err) {
      this.dropClient(c, '08P01', describeError(err));
      return;
    }
    if (forward.length > 0) {
      if (c.server !== undefined && !c.server.settingUp) {
        c.server.socket.write(forward);
        c.server.unanswered?.push(forward);
      } else {
        c.pending.push(forward);
        if (c.server === undefined && c.waitingSince === undefined) this.enqueue(c);
      }
    }
    if (terminated) {
      c.gone = true;
      c.socket.end();
      this.settle(c);
    }
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
    if (c.outstanding === 0 && !s.settingUp) {
      if (c.status === 'I' && !c.unsynced) this.detach(c);
      else {
        // an open transaction of a client that left: closing the connection rolls it back
        c.server = undefined;
        this.closeServer(s);
        this.forget(c);
      }
    }
  }

  private forget(c: ClientConn): void {
    const i = this.waiting.indexOf(c);
    if (i >= 0) this.waiting.splice(i, 1);
    if (this.clients.delete(c.id)) this.publish();
    c.socket.destroy();
  }

  /** Ends a client with an error (it sees why), giving back or closing its server connection. */
  private dropClient(c: ClientConn, sqlstate: string, text: string): void {
    if (!c.gone) c.socket.end(errorResponse('FATAL', sqlstate, text));
    c.gone = true;
    const s = c.server;
    c.server = undefined;
    if (s !== undefined) this.closeServer(s);
    this.forget(c);
  }

  private cancel(pid: number, secret: number): void {
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

  // --- the pool -------------------------------------------------------------------------------

  private enqueue(c: ClientConn): void {
    c.waitingSince = Date.now();
    this.waiting.push(c);
    this.dispatch();
  }

  /** Gives idle server connections to waiting clients, opening new ones up to the pool size. */
  private dispatch(): void {
    if (!this.held && this.suspectSince === undefined) {
      while (this.waiting.length > 0) {
        const s = this.idle.pop();
        if (s === undefined) break;
        this.attach(this.waiting.shift()!, s);
      }
      const wanted = Math.min(
        this.waiting.length - this.opening,
        this.s.poolSize - this.all.size - this.opening,
      );
      const wait = this.openRetryAt - Date.now();
      if (wanted > 0 && wait > 0) {
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          this.dispatch();
        }, wait);
      } else for (let i = 0; i < wanted; i++) void this.grow();
    }
    this.publish();
  }

  private async grow(): Promise<void> {
    this.opening++;
    const generation = this.generation;
    let s: ServerConn;
    try {
      s = await this.open();
    } catch (err) {
      this.opening--;
      if (generation !== this.generation) return this.dispatch();
      this.openRetryAt = Date.now() + OPEN_RETRY_MS;
      if (isBrabantError(err, 'SOURCE_UNAVAILABLE')) {
        this.suspect(err.message);
      } else {
        // the node answers but refuses (authentication, database): the client waiting longest hears why
        const c = this.waiting.shift();
        this.failedTx.inc({ reason: 'server_refused' });
        if (c !== undefined) this.dropClient(c, '08006', describeError(err));
      }
      return this.dispatch();
    }
    this.opening--;
    this.pool(s);
  }

  private async open(): Promise<ServerConn & { announced: Map<string, string> }> {
    const target = this.target;
    const login = await openServer(target, this.s.connectTimeoutMs);
    const s: ServerConn & { announced: Map<string, string> } = {
      socket: login.socket,
      target,
      generation: this.generation,
      pid: login.pid,
      secret: login.secret,
      vars: serverVars(login.params),
      scanner: new MessageScanner(new Set(['Z', 'S', 'E'])),
      client: undefined,
      settingUp: false,
      setupError: undefined,
      unanswered: undefined,
      closing: false,
      announced: login.params,
    };
    s.socket.on('error', () => {});
    s.socket.on('data', (chunk: Buffer) => this.fromServer(s, chunk));
    s.socket.on('close', () => this.serverClosed(s));
    this.all.add(s);
    return s;
  }

  /** An idle server connection: to the next waiting client, else to the pool. */
  private pool(s: ServerConn): void {
    if (s.closing) return;
    if (s.generation !== this.generation) {
      this.closeServer(s);
      this.dispatch();
      return;
    }
    this.idle.push(s);
    this.dispatch();
  }

  private attach(c: ClientConn, s: ServerConn): void {
    c.waitingSince = undefined;
    c.server = s;
    s.client = c;
    const sql = setStatements(c.vars, s.vars);
    if (sql !== '') {
      s.settingUp = true;
      s.setupError = undefined;
      s.socket.write(query(sql));
      return;
    }
    this.flushPending(c, s);
  }

  private flushPending(c: ClientConn, s: ServerConn): void {
    if (c.gone) {
      // it left before its transaction reached a server: that transaction does not run (settle)
      c.pending = [];
      c.outstanding = 0;
      c.unsynced = false;
      this.settle(c);
      return;
    }
    if (c.pending.length > 0) {
      const bytes = c.pending.length === 1 ? c.pending[0]! : Buffer.concat(c.pending);
      s.socket.write(bytes);
      // a transaction starts here (the client had none open): keep its bytes until answered
      s.unanswered = c.status === 'I' ? [bytes] : undefined;
    }
    c.pending = [];
  }

  /** Gives the client's server connection back. */
  private detach(c: ClientConn): void {
    const s = c.server!;
    c.server = undefined;
    s.client = undefined;
    if (c.gone) this.forget(c);
    this.pool(s);
    this.notifyDrained();
  }

  private fromServer(s: ServerConn, chunk: Buffer): void {
    const c = s.client;
    if (c === undefined) {
      // an idle server connection speaks only to say it is going away (FATAL, then close): lost
      s.socket.destroy();
      return;
    }
    if (s.settingUp) {
      this.fromServerSettingUp(s, c, chunk);
      return;
    }
    // Where the transaction ended (ReadyForQuery, idle, nothing more pending): the server
    // connection goes back to the pool there. Bytes after it are no longer the client's (a
    // backend exiting on postmaster death sends its FATAL right behind its last answer).
    let releaseAt = -1;
    let unread = false;
    try {
      s.scanner.scan(chunk, (m, end) => {
        if (releaseAt >= 0 || unread) return;
        if (s.unanswered !== undefined) {
          unread = m.type === 'E' && exitedOnPostmasterDeath(m.body!);
          if (unread) return;
          s.unanswered = undefined;
        }
        if (m.type === 'Z') {
          c.outstanding = Math.max(0, c.outstanding - 1);
          c.status = String.fromCharCode(m.body![0]!) as TransactionStatus;
          if (c.outstanding === 0 && c.status === 'I' && !c.unsynced) releaseAt = end;
        } else if (m.type === 'S') this.noteParameter(s, c, m.body!);
      });
    } catch (err) {
      this.dropClient(c, '08P01', `the node broke the protocol: ${describeError(err)}`);
      return;
    }
    if (unread) {
      this.resend(c, s, s.unanswered!);
      return;
    }
    if (releaseAt >= 0 && releaseAt < chunk.length) {
      // the client's part, then what the now idle server connection says: it is going away (lost)
      if (!c.gone) c.socket.write(chunk.subarray(0, releaseAt));
      c.server = undefined;
      s.client = undefined;
      if (c.gone) this.forget(c);
      s.socket.destroy();
      return;
    }
    if (!c.gone) c.socket.write(chunk);
    if (c.gone) this.settle(c);
    else if (releaseAt >= 0 && c.server === s) this.detach(c);
  }

  private fromServerSettingUp(s: ServerConn, c: ClientConn, chunk: Buffer): void {
    let ready = false;
    let exiting = false;
    s.scanner.scan(chunk, (m) => {
      if (m.type === 'S') this.noteParameter(s, c, m.body!);
      else if (m.type === 'E') {
        s.setupError = parseErrorFields(m.body!).get('M');
        exiting ||= exitedOnPostmasterDeath(m.body!);
      } else if (m.type === 'Z') ready = true;
    });
    if (exiting) {
      // nothing of the client's was sent yet
      this.resend(c, s, []);
      return;
    }
    if (!ready) return;
    s.settingUp = false;
    if (s.setupError !== undefined) {
      // the client's own settings are refused (as they would be at login on the node)
      this.dropClient(c, '22023', `the router could not apply the client's settings: ${s.setupError}`);
      return;
    }
    // parameters PostgreSQL does not report back are now what the client asked for
    for (const [k, v] of c.vars) s.vars.set(k, v);
    this.flushPending(c, s);
  }

  private noteParameter(s: ServerConn, c: ClientConn, body: Buffer): void {
    const p = parseParameterStatus(body);
    const name = trackedName(p.name);
    if (name === undefined) return;
    s.vars.set(name, p.value);
    c.vars.set(name, p.value);
  }

  private serverClosed(s: ServerConn): void {
    this.all.delete(s);
    const i = this.idle.indexOf(s);
    if (i >= 0) this.idle.splice(i, 1);
    const c = s.client;
    s.client = undefined;
    if (c !== undefined && c.server === s && s.settingUp) {
      // lost while setting the client's parameters: nothing of the client's was sent yet
      this.resend(c, s, []);
    } else if (c !== undefined && c.server === s) {
      c.server = undefined;
      if (!c.gone) {
        this.failedTx.inc({ reason: 'server_lost' });
        this.log.warn(
          { node: describeTarget(s.target), client: c.id },
          'server connection lost during a client transaction: the client is told and disconnected',
        );
      }
      this.dropClient(
        c,
        '08006',
        `the connection to ${describeTarget(s.target)} was lost during the transaction (node down?); if it was committing, its outcome is unknown until the node returns`,
      );
    }
    if (!s.closing && s.generation === this.generation)
      this.suspect(`server connection to ${describeTarget(s.target)} lost`);
    this.notifyDrained();
    this.dispatch();
  }

  /**
   * The server connection died before the node read any of the client's transaction: it goes
   * first in the queue, to run on the leader the router chooses next.
   */
  private resend(c: ClientConn, s: ServerConn, bytes: Buffer[]): void {
    c.server = undefined;
    s.client = undefined;
    s.unanswered = undefined;
    c.pending = [...bytes, ...c.pending];
    c.waitingSince = Date.now();
    this.waiting.unshift(c);
    this.resent.inc();
    this.log.info(
      { node: describeTarget(s.target), client: c.id },
      'server connection lost before the node read the transaction: it waits for the next leader',
    );
    s.socket.destroy();
  }

  /** Closes a server connection on purpose (its client, if any, is already dealt with). */
  private closeServer(s: ServerConn): void {
    if (s.closing) return;
    s.closing = true;
    s.client = undefined;
    const i = this.idle.indexOf(s);
    if (i >= 0) this.idle.splice(i, 1);
    s.socket.end(terminate());
  }

  private suspect(reason: string): void {
    if (this.suspectSince !== undefined) return;
    this.suspectSince = Date.now();
    this.log.warn(
      { node: describeTarget(this.target), reason },
      'leader suspected: new transactions wait until it answers a health check or the router repoints',
    );
    this.onSuspect(this.target, reason);
  }

  private expireWaits(): void {
    const now = Date.now();
    const expired = this.waiting.filter((c) => now - c.waitingSince! > this.s.waitTimeoutMs);
    for (const c of expired) {
      this.waiting.splice(this.waiting.indexOf(c), 1);
      this.failedTx.inc({ reason: 'wait_timeout' });
      this.dropClient(
        c,
        '08000',
        `no server connection within ${this.s.waitTimeoutMs} ms (BRABANT_ROUTER_WAIT_TIMEOUT_MS): the region's leader ${describeTarget(this.target)} is ${this.suspectSince !== undefined ? 'not answering' : this.held ? 'held for a switchover' : 'at its pool size'}`,
      );
    }
  }

  /** Resolves the drains waiting, once no transaction runs (counted only while one waits: this is on every release). */
  private notifyDrained(): void {
    if (this.drained.length > 0 && this.busyServers() === 0) for (const f of this.drained.splice(0)) f();
  }

  private busyServers(): number {
    let n = 0;
    for (const s of this.all) if (s.client !== undefined) n++;
    return n;
  }

  private publish(): void {
    this.gauges.clients.set(this.clients.size);
    this.gauges.waiting.set(this.waiting.length);
    this.gauges.servers.set(this.all.size);
  }
}

/**
 * A backend's FATAL on postmaster death, sent when it was waiting to read from the client
 * (PostgreSQL's secure_read): it read nothing more. Matched on severity, SQLSTATE and message,
 * so a localized server (lc_messages) falls back to failing the transaction.
 */
function exitedOnPostmasterDeath(errorBody: Buffer): boolean {
  const f = parseErrorFields(errorBody);
  return f.get('V') === 'FATAL' && f.get('C') === '57P01' && /postmaster exit/.test(f.get('M') ?? '');
}
