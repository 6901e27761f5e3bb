/**
 * The router's data path (I/O): a PostgreSQL-protocol proxy with transaction pooling in front of
 * the region's write leader. It replaces pgbouncer because pgbouncer fails new transactions
 * ("server login has been failing") in the milliseconds after the leader dies, before any
 * control loop can pause it; here the part that sees a server connection fail is the part that
 * decides what clients see.
 *
 * - A client gets a server connection of its role for one transaction (from its first message
 *   until ReadyForQuery says idle with nothing more pending) and gives it back after.
 * - While the proxy is held (`hold`, for a switchover) or suspects the leader (a server
 *   connection was lost or could not be opened), new transactions wait instead of failing.
 *   Only transactions already running on a lost server connection fail: their outcome is known
 *   only to the node that died.
 * - `drain` waits until no transaction is running; `repoint` sends new transactions to another
 *   node and closes pooled connections to the old one.
 *
 * This file is the scheduling: who may log in, which client waits, and when it gets a server
 * connection. The rest, by concern: client-login.ts (a client's login: TLS, authentication),
 * client-access.ts and client-limits.ts (what clients must do, and how many may), relay.ts (a
 * client's bytes to its server connection and the answers back), server-state.ts (what a
 * server connection is doing), transaction-tracker.ts (where a transaction is, from the
 * messages; pure), role-pools.ts and server-pool.ts (the server connections of each role).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { BrabantError, describeError, isBrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import type { MetricsRegistry } from '../runtime/metrics.ts';
import { SQLSTATE } from '../runtime/sqlstate.ts';
import { AuthQuery } from './auth-query.ts';
import { type ClientAccess, type Lookup, lookUpListed } from './client-access.ts';
import { ClientLimits } from './client-limits.ts';
import { type LoginHost, logIn, type Refusal, refuse, served } from './client-login.ts';
import { type ClientConn, Relay, type Scheduler, type ServerConn } from './relay.ts';
import { type RolePool, RolePools } from './role-pools.ts';
import type { ScramKeys } from './scram.ts';
import { describeTarget, type Target } from './server-connection.ts';
import type { ServerState } from './server-state.ts';
import { clientVars, type Vars } from './session-params.ts';

export interface ProxySettings {
  port: number;
  /** The database name clients use. */
  database: string;
  /** Server connections per role. */
  poolSize: number;
  connectTimeoutMs: number;
  /** Longest a transaction waits for a server connection before it is refused. */
  waitTimeoutMs: number;
  /** What clients must do to log in (TLS, authentication), and how many may. */
  clients: ClientAccess;
}

export class TransactionProxy {
  private server: Server | undefined;
  private readonly pools: RolePools<ClientConn>;
  private readonly relay: Relay;
  private readonly limits: ClientLimits;
  private readonly lookUp: ((role: string) => Promise<Lookup>) | undefined;
  private readonly authQuery: AuthQuery | undefined;
  private readonly host: LoginHost;
  private held = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private suspectSince: number | undefined;
  private drained: (() => void)[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private readonly failedTx;
  private readonly refusedLogins;
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
    this.refusedLogins = metrics.counter(
      'brabant_router_logins_refused_total',
      'Client logins the router refused, by reason (auth_failed, tls_required, too_many_clients, too_many_for_role, startup_timeout, protocol, …)',
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
    this.relay = new Relay(
      this.scheduler(),
      log,
      { failedTx: this.failedTx, resent, clients: this.gauges.clients },
      { maxMessageBytes: s.clients.maxMessageBytes },
    );
    this.pools = new RolePools(s, now, {
      data: (server, chunk) => this.relay.fromServer(server, chunk),
      closed: (server, was) => this.serverClosed(server, was),
    });
    this.limits = new ClientLimits({ clients: s.clients.maxClients, perRole: s.clients.maxClientsPerUser });
    const auth = s.clients.auth;
    if (auth.kind === 'scram' && auth.source.kind === 'query')
      this.authQuery = new AuthQuery(auth.source.sql, () => this.pools.target, s.connectTimeoutMs);
    if (auth.kind === 'scram') {
      const source = auth.source;
      this.lookUp =
        source.kind === 'file'
          ? async (role) => lookUpListed(source.users, role)
          : (role) => this.queryVerifier(role);
    }
    this.host = this.loginHost();
  }

  /** Opens one server connection to the leader (to learn its parameters), then listens on 127.0.0.1. */
  async start(leader: Target): Promise<void> {
    this.pools.repoint(leader);
    await this.roleReady(leader.user, undefined);
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
    this.relay.disconnectAll();
    this.pools.closeAll();
    this.authQuery?.close();
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
    if (this.pools.busy === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drained = this.drained.filter((f) => f !== done);
        reject(
          new BrabantError(
            'TIMEOUT',
            `${this.pools.busy} transaction(s) still running after ${timeoutMs} ms (long transactions hold a switchover)`,
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
    this.pools.repoint(target);
    this.authQuery?.repoint();
    this.suspectSince = undefined;
    this.dispatch();
  }

  stats() {
    return {
      clients: this.relay.size,
      /** Connections still logging in. */
      loggingIn: this.limits.size - this.relay.size,
      waiting: this.pools.waiting,
      /** Bytes held for clients waiting for a server connection. */
      pendingBytes: this.relay.pendingBytes,
      servers: this.pools.size,
      busy: this.pools.busy,
      roles: [...this.pools.all()].map((p) => p.role),
      held: this.held,
      suspectSince: this.suspectSince,
      target: describeTarget(this.pools.target),
    };
  }

  // --- logins ---------------------------------------------------------------------------------

  private accept(socket: Socket): void {
    socket.on('error', () => {});
    const full = this.limits.accept();
    if (full !== undefined) {
      this.loginRefused(full, undefined);
      refuse(socket, full);
      return;
    }
    socket.once('close', () => this.limits.closed());
    logIn(socket, this.host);
  }

  private loginHost(): LoginHost {
    return {
      access: this.s.clients,
      mockSecret: randomBytes(32),
      cancel: (pid, secret) => this.relay.cancel(pid, secret),
      served: (params) =>
        served(params, {
          database: this.s.database,
          // with trust, only the router's own role: no one else's password was checked
          role: this.s.clients.auth.kind === 'trust' ? this.pools.target.user : undefined,
        }),
      lookup: (role) => {
        if (this.lookUp === undefined) throw new Error('a verifier looked up without SCRAM');
        return this.lookUp(role);
      },
      admit: (socket, params, keys, handOver) => this.admit(socket, params, keys, handOver),
      refused: (r, role, why) => this.loginRefused(r, role, why),
    };
  }

  private async queryVerifier(role: string): Promise<Lookup> {
    try {
      return await this.authQuery!.lookup(role);
    } catch (err) {
      this.log.error({ role, error: describeError(err) }, 'auth query failed: the client is refused');
      throw new BrabantError(
        'SOURCE_UNAVAILABLE',
        'the router cannot check passwords now: its auth query failed (the router’s log says why)',
      );
    }
  }

  /** An authenticated client: a place for its role, its role's pool, its settings, then the relay. */
  private async admit(
    socket: Socket,
    params: Map<string, string>,
    keys: ScramKeys | undefined,
    handOver: () => Buffer,
  ): Promise<Refusal | undefined> {
    const role = params.get('user')!;
    const full = this.limits.enter(role);
    if (full !== undefined) return full;
    let handed = false;
    try {
      let pool: RolePool<ClientConn>;
      try {
        pool = await this.roleReady(role, keys);
      } catch (err) {
        return {
          sqlstate: SQLSTATE.CONNECTION_FAILURE,
          reason: 'unavailable',
          text: `the router could not open a connection as role "${role}": ${describeError(err)}`,
        };
      }
      let vars: Vars;
      try {
        vars = clientVars(params, pool.defaults);
      } catch (err) {
        return { sqlstate: SQLSTATE.PROTOCOL_VIOLATION, reason: 'settings', text: (err as Error).message };
      }
      // it left, or its login timed out, while its role's first connection was opened
      if (socket.destroyed || !socket.writable) return undefined;
      this.relay.admit(socket, role, vars, pool.announced, handOver());
      handed = true;
      return undefined;
    } finally {
      // (once handed over, the relay frees the place when the client leaves)
      if (!handed) this.limits.leave(role);
    }
  }

  /** The pool of a role, with its first connection opened if it has none (its parameters are its clients'). */
  private async roleReady(role: string, keys: ScramKeys | undefined): Promise<RolePool<ClientConn>> {
    let pool = this.pools.get(role);
    if (pool === undefined) {
      const created = this.pools.create(role, keys);
      created.ready = this.openFirst(created);
      pool = created;
    } else if (keys !== undefined) this.pools.renew(pool, keys);
    await pool.ready;
    return pool;
  }

  private async openFirst(pool: RolePool<ClientConn>): Promise<void> {
    const first = await pool.servers.open();
    if (first.kind === 'failed') {
      this.pools.remove(pool);
      throw first.error;
    }
    pool.announced = new Map(first.announced);
    // a copy: the connection's own settings change with the clients it serves
    pool.defaults = new Map(first.server.vars);
    this.giveBack(first.server);
  }

  private loginRefused(r: Refusal, role: string | undefined, why?: string): void {
    this.refusedLogins.inc({ reason: r.reason });
    this.log.info(
      { role, reason: r.reason, ...(why === undefined ? {} : { why }) },
      `login refused: ${r.text}`,
    );
  }

  // --- scheduling -----------------------------------------------------------------------------

  /** The relay's way into the queues and the pools. */
  private scheduler(): Scheduler {
    return {
      enqueue: (c) => {
        const waiting = this.poolOf(c).waiting;
        if (waiting.has(c)) return;
        waiting.push(c, this.now());
        this.dispatch();
      },
      requeue: (c) => this.poolOf(c).waiting.pushFront(c, this.now()),
      left: (c) => {
        this.pools.get(c.role)?.waiting.remove(c);
        this.limits.leave(c.role);
        this.publish();
      },
      giveBack: (s) => this.giveBack(s),
      close: (s) => this.pools.of(s)?.servers.close(s),
      lose: (s) => this.pools.of(s)?.servers.lose(s),
      released: () => this.notifyDrained(),
    };
  }

  /** (A client is admitted only once its role's pool is ready, and pools that were ready stay.) */
  private poolOf(c: ClientConn): RolePool<ClientConn> {
    return this.pools.get(c.role)!;
  }

  /** Gives idle server connections to waiting clients, opening new ones up to the pool size. */
  private dispatch(): void {
    if (!this.held && this.suspectSince === undefined)
      for (const pool of this.pools.all()) {
        while (pool.waiting.length > 0) {
          const s = pool.servers.take();
          if (s === undefined) break;
          this.relay.attach(pool.waiting.shift()!, s);
        }
        const wanted = pool.servers.wanted(pool.waiting.length);
        if ('retryInMs' in wanted) {
          this.retryTimer ??= setTimeout(() => {
            this.retryTimer = undefined;
            this.dispatch();
          }, wanted.retryInMs);
        } else for (let i = 0; i < wanted.open; i++) void this.grow(pool);
      }
    this.publish();
  }

  private async grow(pool: RolePool<ClientConn>): Promise<void> {
    const opened = await pool.servers.open();
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
        const c = pool.waiting.shift();
        this.failedTx.inc({ reason: 'server_refused' });
        if (c !== undefined) this.relay.drop(c, SQLSTATE.CONNECTION_FAILURE, describeError(err));
      }
    }
    this.dispatch();
  }

  /** An idle server connection: to the next waiting client, else to the pool. */
  private giveBack(s: ServerConn): void {
    const pool = this.pools.of(s);
    if (pool === undefined) s.socket.destroy();
    else pool.servers.giveBack(s);
    this.dispatch();
  }

  private serverClosed(s: ServerConn, was: ServerState<ClientConn>): void {
    this.relay.serverClosed(s, was);
    if (was.kind !== 'closing' && this.pools.of(s)?.servers.isCurrent(s))
      this.suspect(`server connection to ${describeTarget(s.target)} lost`);
    this.notifyDrained();
    this.dispatch();
  }

  private suspect(reason: string): void {
    if (this.suspectSince !== undefined) return;
    this.suspectSince = this.now();
    this.log.warn(
      { node: describeTarget(this.pools.target), reason },
      'leader suspected: new transactions wait until it answers a health check or the router repoints',
    );
    this.onSuspect(this.pools.target, reason);
  }

  private expireWaits(): void {
    for (const pool of this.pools.all())
      for (const c of pool.waiting.expire(this.now(), this.s.waitTimeoutMs)) {
        this.failedTx.inc({ reason: 'wait_timeout' });
        this.relay.drop(
          c,
          SQLSTATE.CONNECTION_EXCEPTION,
          `no server connection within ${this.s.waitTimeoutMs} ms (BRABANT_ROUTER_WAIT_TIMEOUT_MS): the region's leader ${describeTarget(this.pools.target)} is ${this.suspectSince !== undefined ? 'not answering' : this.held ? 'held for a switchover' : 'at its pool size'}`,
        );
      }
  }

  /** Resolves the drains waiting, once no transaction runs (counted only while one waits: this is on every release). */
  private notifyDrained(): void {
    if (this.drained.length > 0 && this.pools.busy === 0) for (const f of this.drained.splice(0)) f();
  }

  private publish(): void {
    this.gauges.waiting.set(this.pools.waiting);
    this.gauges.servers.set(this.pools.size);
  }
}
