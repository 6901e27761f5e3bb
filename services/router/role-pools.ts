/**
 * The proxy's server connections per role: a client's transactions run on connections logged
 * in as its own role, so the node's privileges apply to it as if it had connected directly.
 * The router's own role (the user of the node URLs) logs in with the URL's password; another
 * role, which only SCRAM clients have, with the SCRAM keys its clients proved (pass-through:
 * the router never learns the password). A role's pool is opened with its first connection,
 * whose parameters (per-role settings such as ALTER ROLE … SET TimeZone) are what its clients
 * are announced and start with.
 *
 * Each role has its own queue of waiting clients and its own pool (BRABANT_ROUTER_POOL_SIZE
 * connections at most); hold, suspicion, drain and repoint act on all of them together.
 */
import type { ScramKeys } from './scram.ts';
import type { Target } from './server-connection.ts';
import { type PoolEvents, type PooledServer, type PoolSettings, ServerPool } from './server-pool.ts';
import type { Vars } from './session-params.ts';
import { WaitQueue } from './wait-queue.ts';

export interface RolePool<Client> {
  readonly role: string;
  readonly servers: ServerPool<Client>;
  readonly waiting: WaitQueue<Client>;
  /** Reported by the role's first server connection: announced to its clients, the defaults of their settings. */
  announced: Map<string, string>;
  defaults: Vars;
  /** The keys its clients proved (none for the router's own role). */
  scram: ScramKeys | undefined;
  /** Settles once the first connection told the above. */
  ready: Promise<void>;
}

export class RolePools<Client> {
  private readonly roles = new Map<string, RolePool<Client>>();
  private leader: Target = { host: '', port: 0, dbname: '', user: '' };

  constructor(
    private readonly s: PoolSettings,
    private readonly now: () => number,
    private readonly on: PoolEvents<Client>,
  ) {}

  /** The current leader, as the router's own role reaches it. */
  get target(): Target {
    return this.leader;
  }

  get(role: string): RolePool<Client> | undefined {
    return this.roles.get(role);
  }

  all(): IterableIterator<RolePool<Client>> {
    return this.roles.values();
  }

  /** The pool of the role a server connection is logged in as. */
  of(server: PooledServer<Client>): RolePool<Client> | undefined {
    return this.roles.get(server.target.user);
  }

  /** A new role's pool (its first connection still to be opened, `ready` to be set by the caller). */
  create(role: string, scram: ScramKeys | undefined): RolePool<Client> {
    const servers = new ServerPool<Client>(this.s, this.now, this.on);
    const pool: RolePool<Client> = {
      role,
      servers,
      waiting: new WaitQueue<Client>(),
      announced: new Map(),
      defaults: new Map(),
      scram,
      ready: Promise.resolve(),
    };
    servers.repoint(this.targetOf(pool));
    this.roles.set(role, pool);
    return pool;
  }

  /** A role whose first connection could not be opened: the next login tries again. */
  remove(pool: RolePool<Client>): void {
    if (this.roles.get(pool.role) === pool) this.roles.delete(pool.role);
    pool.servers.closeAll();
  }

  /** A client of the role proved other keys (its password changed): new connections use them. */
  renew(pool: RolePool<Client>, scram: ScramKeys): void {
    if (pool.scram?.clientKey.equals(scram.clientKey)) return;
    pool.scram = scram;
    pool.servers.renew(this.targetOf(pool));
  }

  /** New connections of every role go to `leader`; idle ones to the old one close now, busy ones once idle. */
  repoint(leader: Target): void {
    this.leader = leader;
    for (const pool of this.roles.values()) pool.servers.repoint(this.targetOf(pool));
  }

  /** Connections serving a client, over all roles. */
  get busy(): number {
    let n = 0;
    for (const pool of this.roles.values()) n += pool.servers.busy;
    return n;
  }

  get size(): number {
    let n = 0;
    for (const pool of this.roles.values()) n += pool.servers.size;
    return n;
  }

  get waiting(): number {
    let n = 0;
    for (const pool of this.roles.values()) n += pool.waiting.length;
    return n;
  }

  closeAll(): void {
    for (const pool of this.roles.values()) pool.servers.closeAll();
  }

  private targetOf(pool: RolePool<Client>): Target {
    if (pool.role === this.leader.user) return this.leader;
    const { password: _password, ...node } = this.leader;
    return { ...node, user: pool.role, ...(pool.scram === undefined ? {} : { scram: pool.scram }) };
  }
}
