/**
 * The proxy's server connections to the current target (I/O): opening them (at most the pool
 * size), the idle ones waiting for a client, and closing them. A repoint starts a new
 * generation: connections of an older one are closed as soon as they are idle, never pooled.
 * Which client a connection serves, and when it is done, is the proxy's (server-state.ts).
 */
import type { Socket } from 'node:net';
import { openServer, type ServerLogin, type Target } from './server-connection.ts';
import { type ServerState, servedClient } from './server-state.ts';
import { serverVars, type Vars } from './session-params.ts';
import { ANSWERS_READ } from './transaction-tracker.ts';
import { MessageScanner, terminate } from './wire.ts';

export interface PooledServer<Client> {
  readonly socket: Socket;
  readonly target: Target;
  readonly generation: number;
  /** Its backend key, for passing on a client's cancel request. */
  readonly pid: number;
  readonly secret: number;
  /** Its session's tracked settings, to tell which SET statements a client needs. */
  readonly vars: Vars;
  /** What the node sends, split into messages; at a boundary whenever the connection changes hands. */
  readonly answers: MessageScanner;
  state: ServerState<Client>;
}

export type Opened<Client> =
  | { kind: 'opened'; server: PooledServer<Client>; announced: Map<string, string> }
  /** `stale`: the proxy was repointed while it was being opened. */
  | { kind: 'failed'; error: unknown; stale: boolean };

/** What the pool tells of its connections. */
export interface PoolEvents<Client> {
  data: (server: PooledServer<Client>, chunk: Buffer) => void;
  /** `was`: its state when the socket closed. */
  closed: (server: PooledServer<Client>, was: ServerState<Client>) => void;
}

export interface PoolSettings {
  poolSize: number;
  connectTimeoutMs: number;
}

/** The least time between a failed server connection attempt and the next. */
const OPEN_RETRY_MS = 100;

export class ServerPool<Client> {
  private current: Target = { host: '', port: 0, dbname: '', user: '' };
  private generation = 0;
  private readonly idle: PooledServer<Client>[] = [];
  private readonly all = new Set<PooledServer<Client>>();
  /** Connections being opened. */
  private opening = 0;
  /** After a failed open, the next waits until then (a node answering checks but refusing the pool must not spin). */
  private retryAt = 0;

  constructor(
    private readonly s: PoolSettings,
    private readonly now: () => number,
    private readonly on: PoolEvents<Client>,
    /** Opens and logs in one connection (a stand-in in unit tests). */
    private readonly login: (target: Target, timeoutMs: number) => Promise<ServerLogin> = openServer,
  ) {}

  get target(): Target {
    return this.current;
  }

  get size(): number {
    return this.all.size;
  }

  /** Connections serving a client (busy with a transaction, or setting it up). */
  get busy(): number {
    let n = 0;
    for (const s of this.all) if (servedClient(s.state) !== undefined) n++;
    return n;
  }

  /** Connections to open for `waiting` clients now, or how long until the next may be tried. */
  wanted(waiting: number): { open: number } | { retryInMs: number } {
    const open = Math.min(waiting - this.opening, this.s.poolSize - this.all.size - this.opening);
    const wait = this.retryAt - this.now();
    return open > 0 && wait > 0 ? { retryInMs: wait } : { open };
  }

  /**
   * Opens a connection to the current target and logs in. A failure (as `openServer` rejects)
   * holds the next attempt back a little, unless a repoint came meanwhile (`stale`).
   */
  async open(): Promise<Opened<Client>> {
    this.opening++;
    const generation = this.generation;
    const target = this.current;
    try {
      const login = await this.login(target, this.s.connectTimeoutMs);
      const server: PooledServer<Client> = {
        socket: login.socket,
        target,
        generation,
        pid: login.pid,
        secret: login.secret,
        vars: serverVars(login.params),
        answers: new MessageScanner(ANSWERS_READ),
        state: { kind: 'idle' },
      };
      server.socket.on('error', () => {});
      server.socket.on('data', (chunk: Buffer) => this.on.data(server, chunk));
      server.socket.on('close', () => {
        const was = server.state;
        server.state = { kind: 'closed' };
        this.removed(server);
        this.on.closed(server, was);
      });
      this.all.add(server);
      return { kind: 'opened', server, announced: login.params };
    } catch (error) {
      const stale = generation !== this.generation;
      if (!stale) this.retryAt = this.now() + OPEN_RETRY_MS;
      return { kind: 'failed', error, stale };
    } finally {
      this.opening--;
    }
  }

  /** Whether a connection belongs to the current target (no repoint since it was opened). */
  isCurrent(server: PooledServer<Client>): boolean {
    return server.generation === this.generation;
  }

  /** An idle connection for a waiting client, if there is one. */
  take(): PooledServer<Client> | undefined {
    return this.idle.pop();
  }

  /** An idle connection back into the pool; one to an older target is closed instead. */
  giveBack(server: PooledServer<Client>): void {
    const was = server.state.kind;
    if (was === 'lost' || was === 'closing' || was === 'closed') return;
    server.state = { kind: 'idle' };
    if (server.generation !== this.generation) this.close(server);
    else this.idle.push(server);
  }

  /**
   * A connection going away (the node said so, or broke off): no longer handed to anyone, at
   * once rather than at its close event; that close then counts as a loss.
   */
  lose(server: PooledServer<Client>): void {
    if (server.state.kind !== 'closed') server.state = { kind: 'lost' };
    this.unpool(server);
    server.socket.destroy();
  }

  /** Closes a connection on purpose (its client, if any, is already dealt with). */
  close(server: PooledServer<Client>): void {
    if (server.state.kind === 'closing' || server.state.kind === 'closed') return;
    server.state = { kind: 'closing' };
    this.unpool(server);
    server.socket.end(terminate());
  }

  /** The same node with other credentials: connections opened from now on use them, open ones stay. */
  renew(target: Target): void {
    this.current = target;
  }

  /** New connections go to `target`; idle ones to the old target close now, busy ones once idle. */
  repoint(target: Target): void {
    this.current = target;
    this.generation++;
    for (const s of this.idle.splice(0)) this.close(s);
  }

  closeAll(): void {
    for (const s of this.all) this.close(s);
  }

  private removed(server: PooledServer<Client>): void {
    this.all.delete(server);
    this.unpool(server);
  }

  private unpool(server: PooledServer<Client>): void {
    const i = this.idle.indexOf(server);
    if (i >= 0) this.idle.splice(i, 1);
  }
}
