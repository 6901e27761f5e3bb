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
 *
 * This file is the scheduling: which client waits, and when it gets a server connection. The
 * rest, by concern: client-login.ts (a client's startup phase), relay.ts (a client's bytes to
 * its server connection and the answers back), server-state.ts (what a server connection is
 * doing), transaction-tracker.ts (where a transaction is, from the messages; pure),
 * server-pool.ts (opening, pooling and closing server connections).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { BrabantError, describeError, isBrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import type { MetricsRegistry } from '../runtime/metrics.ts';
import { SQLSTATE } from '../runtime/sqlstate.ts';
import { admission, readStartup } from './client-login.ts';
import { type ClientConn, Relay, type Scheduler, type ServerConn } from './relay.ts';
import { describeTarget, type Target } from './server-connection.ts';
import { ServerPool } from './server-pool.ts';
import type { ServerState } from './server-state.ts';
import type { Vars } from './session-params.ts';
import { WaitQueue } from './wait-queue.ts';
import { errorResponse } from './wire.ts';

export interface ProxySettings {
  port: number;
  /** The database name clients use. */
  database: string;
  poolSize: number;
  connectTimeoutMs: number;
  /** Longest a transaction waits for a server connection before it is refused. */
  waitTimeoutMs: number;
}

export class TransactionProxy {
  private server: Server | undefined;
  private readonly pool: ServerPool<ClientConn>;
  private readonly relay: Relay;
  private readonly waiting = new WaitQueue<ClientConn>();
  private held = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private suspectSince: number | undefined;
  /** Reported by the first server connection: announced to clients, the defaults of their settings. */
  private announced = new Map<string, string>();
  private defaults: Vars = new Map();
  private drained: (() => void)[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private readonly failedTx;
  private readonly gauges;

  constructor(
    private readonly s: ProxySettings,
    private readonly log: Logger,
    metrics: MetricsRegistry,
    /** A server connection to the current target was lost or could not be opened. */
    private readonly onSuspect: (target: Target, reason: string) => void,
    /** The clock (milliseconds): wait timeouts, the pacing of failed opens, when a suspicion began. */
    private readonly now: () => number = Date.now,
  ) {
    this.failedTx = metrics.counter(
      'brabant_router_failed_transactions_total',
      'Client transactions the router failed, by reason (server_lost: running on a node that died)',
    );
    const resent = metrics.counter(
      'brabant_router_transactions_resent_total',
      'Transactions sent again to the next server connection because the node exited (postmaster death) before reading them',
    );
    this.gauges = {
      clients: metrics.gauge('brabant_router_clients', 'Client connections'),
      waiting: metrics.gauge('brabant_router_clients_waiting', 'Clients waiting for a server connection'),
      servers: metrics.gauge('brabant_router_server_connections', 'Server connections to the leader'),
    };
    this.relay = new Relay(this.scheduler(), log, {
      failedTx: this.failedTx,
      resent,
      clients: this.gauges.clients,
    });
    this.pool = new ServerPool(s, now, {
      data: (server, chunk) => this.relay.fromServer(server, chunk),
      closed: (server, was) => this.serverClosed(server, was),
    });
  }

  /** Opens one server connection to the leader (to learn its parameters), then listens on 127.0.0.1. */
  async start(leader: Target): Promise<void> {
    this.pool.repoint(leader);
    const first = await this.pool.open();
    if (first.kind === 'failed') throw first.error;
    this.announced = new Map(first.announced);
    // a copy: the connection's own settings change with the clients it serves
    this.defaults = new Map(first.server.vars);
    this.giveBack(first.server);
    const server = createServer({ noDelay: true, keepAlive: true }, (socket) =>
      readStartup(socket, {
        cancel: (pid, secret) => this.relay.cancel(pid, secret),
        startup: (params, rest) => this.admit(socket, params, rest),
      }),
    );
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
    this.relay.disconnectAll();
    this.pool.closeAll();
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
    if (this.pool.busy === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drained = this.drained.filter((f) => f !== done);
        reject(
          new BrabantError(
            'TIMEOUT',
            `${this.pool.busy} transaction(s) still running after ${timeoutMs} ms (long transactions hold a switchover)`,
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
    this.pool.repoint(target);
    this.suspectSince = undefined;
    this.dispatch();
  }

  stats() {
    return {
      clients: this.relay.size,
      waiting: this.waiting.length,
      servers: this.pool.size,
      busy: this.pool.busy,
      held: this.held,
      suspectSince: this.suspectSince,
      target: describeTarget(this.pool.target),
    };
  }

  private admit(socket: Socket, params: Map<string, string>, rest: Buffer): void {
    const admitted = admission(params, {
      database: this.s.database,
      user: this.pool.target.user,
      defaults: this.defaults,
    });
    if ('sqlstate' in admitted) socket.end(errorResponse('FATAL', admitted.sqlstate, admitted.text));
    else this.relay.admit(socket, admitted.vars, this.announced, rest);
  }

  /** The relay's way into the queue and the pool. */
  private scheduler(): Scheduler {
    return {
      enqueue: (c) => {
        if (this.waiting.has(c)) return;
        this.waiting.push(c, this.now());
        this.dispatch();
      },
      requeue: (c) => this.waiting.pushFront(c, this.now()),
      unqueue: (c) => {
        this.waiting.remove(c);
        this.publish();
      },
      giveBack: (s) => this.giveBack(s),
      close: (s) => this.pool.close(s),
      lose: (s) => this.pool.lose(s),
      released: () => this.notifyDrained(),
    };
  }

  /** Gives idle server connections to waiting clients, opening new ones up to the pool size. */
  private dispatch(): void {
    if (!this.held && this.suspectSince === undefined) {
      while (this.waiting.length > 0) {
        const s = this.pool.take();
        if (s === undefined) break;
        this.relay.attach(this.waiting.shift()!, s);
      }
      const wanted = this.pool.wanted(this.waiting.length);
      if ('retryInMs' in wanted) {
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          this.dispatch();
        }, wanted.retryInMs);
      } else for (let i = 0; i < wanted.open; i++) void this.grow();
    }
    this.publish();
  }

  private async grow(): Promise<void> {
    const opened = await this.pool.open();
    if (opened.kind === 'opened') {
      this.giveBack(opened.server);
      return;
    }
    if (!opened.stale) {
      const err = opened.error;
      if (isBrabantError(err, 'SOURCE_UNAVAILABLE')) {
        this.suspect(err.message);
      } else {
        // the node answers but refuses (authentication, database): the client waiting longest hears why
        const c = this.waiting.shift();
        this.failedTx.inc({ reason: 'server_refused' });
        if (c !== undefined) this.relay.drop(c, SQLSTATE.CONNECTION_FAILURE, describeError(err));
      }
    }
    this.dispatch();
  }

  /** An idle server connection: to the next waiting client, else to the pool. */
  private giveBack(s: ServerConn): void {
    this.pool.giveBack(s);
    this.dispatch();
  }

  private serverClosed(s: ServerConn, was: ServerState<ClientConn>): void {
    this.relay.serverClosed(s, was);
    if (was.kind !== 'closing' && this.pool.isCurrent(s))
      this.suspect(`server connection to ${describeTarget(s.target)} lost`);
    this.notifyDrained();
    this.dispatch();
  }

  private suspect(reason: string): void {
    if (this.suspectSince !== undefined) return;
    this.suspectSince = this.now();
    this.log.warn(
      { node: describeTarget(this.pool.target), reason },
      'leader suspected: new transactions wait until it answers a health check or the router repoints',
    );
    this.onSuspect(this.pool.target, reason);
  }

  private expireWaits(): void {
    for (const c of this.waiting.expire(this.now(), this.s.waitTimeoutMs)) {
      this.failedTx.inc({ reason: 'wait_timeout' });
      this.relay.drop(
        c,
        SQLSTATE.CONNECTION_EXCEPTION,
        `no server connection within ${this.s.waitTimeoutMs} ms (BRABANT_ROUTER_WAIT_TIMEOUT_MS): the region's leader ${describeTarget(this.pool.target)} is ${this.suspectSince !== undefined ? 'not answering' : this.held ? 'held for a switchover' : 'at its pool size'}`,
      );
    }
  }

  /** Resolves the drains waiting, once no transaction runs (counted only while one waits: this is on every release). */
  private notifyDrained(): void {
    if (this.drained.length > 0 && this.pool.busy === 0) for (const f of this.drained.splice(0)) f();
  }

  private publish(): void {
    this.gauges.waiting.set(this.waiting.length);
    this.gauges.servers.set(this.pool.size);
  }
}
