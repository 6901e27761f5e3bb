/**
 * The router of one region: health checks of every node, the choice of the write leader, and
 * its proxy repointed on switchover (planned: hold, wait for the target to catch up, repoint,
 * release — clients wait, none fail), failover (leader dead: repoint at once), and maintenance.
 */
import pg from 'pg';
import { originName } from '../protocol/names.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { MetricsRegistry } from '../runtime/metrics.ts';
import { readSecretFile } from '../runtime/security.ts';
import { CatchUpLinks, originProgress } from './catch-up.ts';
import { clientAccessOf } from './client-access.ts';
import {
  type clientAccessConfig,
  clientAccessDefaults,
  type nodeAccessConfig,
  type routerConfig,
} from './config.ts';
import { HealthChecker, type NodeStatus } from './health.ts';
import { chooseLeader, isDead, type RouterNode } from './leader.ts';
import { TransactionProxy } from './proxy.ts';
import { targetOf } from './server-connection.ts';

/** A catch-up round (mark → reached) this short means the target applies close to live: pause then. */
const CLOSE_TO_LIVE_MS = 200;
/** Catch-up rounds before the pause at most (each a mark on the old leader). */
const MAX_CATCH_UP_ROUNDS = 20;
/** How long a starting router checks the nodes again until one answers, before it exits. */
const START_WAIT_MS = 15_000;

/**
 * The router's options. Those of its clients' access (TLS, authentication, limits) may be left
 * out by a program that embeds the router (the tests, the benchmarks): their declared defaults apply.
 */
export type RouterConfig = Omit<
  ConfigOf<typeof routerConfig>,
  keyof typeof clientAccessConfig | keyof typeof nodeAccessConfig
> &
  Partial<ConfigOf<typeof clientAccessConfig> & ConfigOf<typeof nodeAccessConfig>>;

export interface NodeSpec extends RouterNode {
  url: string;
}

export function parseNodes(entries: string[]): NodeSpec[] {
  return entries.map((e) => {
    const m = /^([^@=]+)@([^=]+)=(postgres(?:ql)?:\/\/.+)$/.exec(e);
    if (m === null)
      throw new BrabantError(
        'CONFIG_INVALID',
        `BRABANT_ROUTER_NODES entry '${e}' must look like id@region=postgres://…`,
      );
    return { id: m[1]!, region: m[2]!, url: m[3]! };
  });
}

/** A node URL with `password` when it has none (in memory only: the URLs given never hold one). */
export function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const u = new URL(url);
  if (u.password !== '') return url;
  u.password = password;
  return u.toString();
}

export interface MoveRecord {
  kind: 'switchover' | 'failover';
  from: string | undefined;
  to: string;
  at: string;
  /** How long writes could not proceed (hold to release; for failover, from first failed check to repoint). */
  blockedMs: number;
  reason: string;
  /** Switchover: where the blocked time went (pause = transactions in flight finishing). */
  phasesMs?: { pause: number; catchUp: number; repointAndResume: number };
  /** Failover: the dead leader's last known WAL position and what the new leader had applied of it. */
  lostNode?: { lastKnownWalLsn: string | null; appliedByNewLeader: string | null };
}

export class Router {
  readonly metrics = new MetricsRegistry();
  private readonly leaderGauge = this.metrics.gauge(
    'brabant_router_leader',
    'Current write leader of the region (1 = leader)',
  );
  private readonly moves = this.metrics.counter('brabant_router_moves_total', 'Leader changes, by kind');
  private readonly blocked = this.metrics.gauge(
    'brabant_router_last_blocked_ms',
    'How long writes were blocked by the last move, by kind',
  );
  private readonly healthyGauge = this.metrics.gauge(
    'brabant_router_node_healthy',
    'Node answers health checks (1) or not (0)',
  );
  private leader: string | undefined;
  private readonly maintenance = new Set<string>();
  private readonly proxy: TransactionProxy;
  private readonly health: HealthChecker;
  private busy: Promise<unknown> = Promise.resolve();
  private moving = false;
  /** New transactions are held while the leader fails checks. */
  private suspended = false;
  readonly history: MoveRecord[] = [];

  /** The nodes as the router reaches them: their URLs with the router role's password, if given. */
  readonly nodes: NodeSpec[];

  constructor(
    private readonly c: RouterConfig,
    nodes: NodeSpec[],
    private readonly log: Logger,
  ) {
    const password =
      c.nodePasswordFile === undefined || c.nodePasswordFile === ''
        ? undefined
        : readSecretFile(c.nodePasswordFile, 'BRABANT_ROUTER_NODE_PASSWORD_FILE');
    this.nodes = nodes.map((n) => ({ ...n, url: withPassword(n.url, password) }));
    this.proxy = new TransactionProxy(
      {
        port: c.port,
        database: c.database,
        poolSize: c.poolSize,
        connectTimeoutMs: c.checkTimeoutMs,
        waitTimeoutMs: c.waitTimeoutMs,
        clients: clientAccessOf({ ...clientAccessDefaults(), ...definedOnly(c) }),
      },
      log,
      this.metrics,
      // the proxy lost a connection to the leader and holds new transactions: check it now
      () => {
        if (this.leader !== undefined) void this.health.checkNow(this.leader);
      },
    );
    this.health = new HealthChecker(this.nodes, {
      intervalMs: c.checkMs,
      timeoutMs: c.checkTimeoutMs,
      log,
      onChange: () => this.evaluate(),
    });
  }

  get currentLeader(): string | undefined {
    return this.leader;
  }

  async start(): Promise<void> {
    // a node slow to answer its first check (a loaded machine, a TLS and SCRAM login) is given
    // more rounds before the router gives up: one missed check at start is no reason to exit
    const deadline = Date.now() + START_WAIT_MS;
    await this.health.round();
    let d = chooseLeader(this.input(undefined));
    while (d.leader === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, this.c.checkMs));
      await this.health.round();
      d = chooseLeader(this.input(undefined));
    }
    if (d.leader === undefined) {
      throw new BrabantError(
        'COMPONENT_START_FAILED',
        `no node answers health checks: ${this.nodes.map((n) => `${n.id} (${this.health.status.get(n.id)?.lastError})`).join(', ')}`,
      );
    }
    this.leader = d.leader;
    await this.proxy.start(targetOf(this.node(d.leader).url));
    this.log.info({ leader: d.leader, reason: d.reason, port: this.c.port }, 'router started');
    this.publish();
    this.health.start();
  }

  async stop(): Promise<void> {
    this.health.stop();
    await this.busy.catch(() => {});
    await this.proxy.stop();
  }

  status() {
    return {
      region: this.c.region,
      leader: this.leader,
      port: this.c.port,
      database: this.c.database,
      proxy: this.proxy.stats(),
      nodes: this.nodes.map((n) => ({
        id: n.id,
        region: n.region,
        maintenance: this.maintenance.has(n.id),
        ...this.health.status.get(n.id),
      })),
      history: this.history,
    };
  }

  /** Planned move to `to`: pause, wait until `to` applied all the old leader committed, repoint, resume. */
  switchover(to: string, reason = 'requested'): Promise<MoveRecord> {
    return this.exclusive(async () => {
      const target = this.node(to);
      const from = this.leader;
      if (from === to)
        throw new BrabantError('CONFIG_INVALID', `${to} is already the leader of ${this.c.region}`);
      if (this.maintenance.has(to))
        throw new BrabantError('CONFIG_INVALID', `${to} is in maintenance; end it first`);
      if (this.health.status.get(to)?.healthy !== true)
        throw new BrabantError('CONFIG_INVALID', `${to} does not answer health checks`);
      // Catch up first while writes go on, so that the pause only covers the last moments: marks
      // again until one is reached quickly (the target is close to live), not only the first
      const links = from === undefined ? undefined : new CatchUpLinks(this.node(from), target);
      let started: number;
      let paused: number;
      let caughtUp: number;
      let end: number;
      try {
        if (links !== undefined) {
          const deadline = Date.now() + this.c.catchUpTimeoutMs;
          for (let round = 1; ; round++) {
            const t = Date.now();
            await links.waitCaughtUp(Math.max(100, deadline - t));
            if (Date.now() - t <= CLOSE_TO_LIVE_MS || round === MAX_CATCH_UP_ROUNDS) break;
          }
        }
        started = Date.now();
        paused = started;
        caughtUp = started;
        this.proxy.hold();
        try {
          await this.proxy.drain(this.c.switchoverTimeoutMs);
          paused = Date.now();
          await links?.waitCaughtUp(this.c.switchoverTimeoutMs);
          caughtUp = Date.now();
          this.proxy.repoint(targetOf(target.url));
          this.leader = to;
        } finally {
          this.proxy.release();
          end = Date.now();
        }
      } finally {
        await links?.close();
      }
      return this.record({
        kind: 'switchover',
        from,
        to,
        at: new Date().toISOString(),
        blockedMs: end - started,
        reason,
        phasesMs: { pause: paused - started, catchUp: caughtUp - paused, repointAndResume: end - caughtUp },
      });
    });
  }

  /**
   * Adds a node (one that joined and caught up, brabant node join): it must answer a health check
   * first; it takes writes only when a switchover or failover chooses it.
   */
  addNode(n: NodeSpec): Promise<{ nodes: string[] }> {
    return this.exclusive(async () => {
      if (this.nodes.some((x) => x.id === n.id))
        throw new BrabantError('CONFIG_INVALID', `${n.id} is already one of ${this.c.region}'s nodes`);
      this.nodes.push(n);
      await this.health.checkNow(n.id);
      if (this.health.status.get(n.id)?.healthy !== true) {
        const why = this.health.status.get(n.id)?.lastError;
        this.nodes.splice(this.nodes.indexOf(n), 1);
        this.health.forget(n.id);
        throw new BrabantError('CONFIG_INVALID', `${n.id} does not answer health checks (${why}); not added`);
      }
      this.log.info({ node: n.id, region: n.region }, 'node added');
      this.publish();
      return { nodes: this.nodes.map((x) => x.id) };
    });
  }

  /** Removes a node (one that leaves, brabant node part); refused while it is the leader. */
  removeNode(id: string): Promise<{ nodes: string[] }> {
    return this.exclusive(async () => {
      const n = this.node(id);
      if (this.leader === id) {
        const other = this.nodes.find((x) => x.id !== id && x.region === this.c.region);
        throw new BrabantError(
          'NODE_IS_LEADER',
          `${id} is the write leader of ${this.c.region}: ${
            other
              ? `move the writes first (brabant switchover --region ${this.c.region} --to ${other.id})`
              : `it is the region's last node: join another node into ${this.c.region} first (brabant node join NEW --from ${id}), switch the router over to it, then part ${id}`
          }`,
        );
      }
      this.nodes.splice(this.nodes.indexOf(n), 1);
      this.maintenance.delete(id);
      this.health.forget(id);
      this.leaderGauge.set(0, { region: this.c.region, node: id });
      this.log.info({ node: id }, 'node removed');
      return { nodes: this.nodes.map((x) => x.id) };
    });
  }

  /** Moves traffic away from a node (switchover if it leads) and keeps it away until `endMaintenance`. */
  startMaintenance(node: string): Promise<MoveRecord | undefined> {
    this.node(node);
    this.maintenance.add(node);
    this.log.info({ node }, 'maintenance started');
    if (this.leader !== node) return Promise.resolve(undefined);
    const d = chooseLeader(this.input(this.leader));
    if (d.leader === undefined || d.leader === node) {
      this.maintenance.delete(node);
      return Promise.reject(
        new BrabantError('CONFIG_INVALID', `no other healthy node to take over from ${node}`),
      );
    }
    return this.switchover(d.leader, `maintenance of ${node}`);
  }

  /** Brings a node back: once it has caught up with the current leader, it leads again if it is the region's first node. */
  async endMaintenance(node: string): Promise<MoveRecord | undefined> {
    this.node(node);
    this.maintenance.delete(node);
    this.log.info({ node }, 'maintenance ended');
    const preferred = this.nodes.find(
      (n) =>
        n.region === this.c.region && !this.maintenance.has(n.id) && this.health.status.get(n.id)?.healthy,
    );
    if (preferred?.id === node && this.leader !== node)
      return this.switchover(node, `end of maintenance of ${node}`);
    return undefined;
  }

  private evaluate(): void {
    for (const n of this.nodes)
      this.healthyGauge.set(this.health.status.get(n.id)?.healthy ? 1 : 0, { node: n.id });
    if (this.moving || this.leader === undefined) return;
    const current = this.health.status.get(this.leader);
    // The proxy holds new transactions after losing a connection to the leader: a check begun
    // after that and answered lets them go on (a single backend ended, not the node).
    const suspected = this.proxy.suspectedSince;
    if (suspected !== undefined && current?.healthy === true && (current.checkedFrom ?? 0) >= suspected) {
      this.log.info(
        { leader: this.leader },
        'leader answers a health check after a lost server connection: transactions go on',
      );
      this.proxy.trust();
    }
    // A failing leader: hold new transactions (they wait instead of failing) while it is watched;
    // let them go on if it answers again, or to the new leader after failover.
    if (current?.healthy === false && !this.suspended && !isDead(current, Date.now(), this.c.deadAfterMs)) {
      this.suspended = true;
      this.log.warn(
        { leader: this.leader, error: current.lastError },
        'leader failing health checks: new transactions wait while it is watched',
      );
      this.proxy.hold();
      return;
    }
    if (current?.healthy === true && this.suspended) {
      this.suspended = false;
      this.log.info({ leader: this.leader }, 'leader answers again: transactions resume');
      this.proxy.release();
      return;
    }
    const d = chooseLeader(this.input(this.leader));
    if (!d.changed || d.leader === undefined) return;
    const from = this.leader;
    const to = d.leader;
    void this.exclusive(async () => {
      if (this.leader !== from) return; // someone moved it meanwhile
      const deadStatus = this.health.status.get(from);
      const failingSince = deadStatus?.failingSince ?? Date.now();
      // transactions running on the dead node have failed already; the waiting ones go to `to`
      this.proxy.repoint(targetOf(this.node(to).url));
      this.leader = to;
      if (this.suspended) {
        this.suspended = false;
        this.proxy.release();
      }
      const applied = await this.appliedOf(to, from).catch(() => null);
      this.record({
        kind: 'failover',
        from,
        to,
        at: new Date().toISOString(),
        blockedMs: Date.now() - failingSince,
        reason: d.reason,
        lostNode: { lastKnownWalLsn: deadStatus?.walLsn ?? null, appliedByNewLeader: applied },
      });
      this.log.warn(
        { lost: from, lastKnownWalLsn: deadStatus?.walLsn ?? null, appliedByNewLeader: applied },
        `failover: what ${from} committed after the applied position is not lost while its disk survives; it replicates when ${from} returns`,
      );
    }).catch((err) => this.log.error({ err: (err as Error).message }, 'failover failed'));
  }

  private input(current: string | undefined) {
    return {
      region: this.c.region,
      nodes: this.nodes,
      current,
      health: this.health.status as Map<string, NodeStatus>,
      maintenance: this.maintenance,
      now: Date.now(),
      deadAfterMs: this.c.deadAfterMs,
    };
  }

  private node(id: string): NodeSpec {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined)
      throw new BrabantError(
        'CONFIG_INVALID',
        `unknown node '${id}'; known: ${this.nodes.map((x) => x.id).join(', ')}`,
      );
    return n;
  }

  private async appliedOf(on: string, source: string): Promise<string | null> {
    const c = new pg.Client({ connectionString: this.node(on).url, connectionTimeoutMillis: 1000 });
    c.on('error', () => {});
    await c.connect();
    try {
      return (await originProgress(c, originName(source))) ?? null;
    } finally {
      await c.end().catch(() => {});
    }
  }

  private record(m: MoveRecord): MoveRecord {
    this.history.push(m);
    this.moves.inc({ kind: m.kind });
    this.blocked.set(m.blockedMs, { kind: m.kind });
    this.publish();
    this.log.info(m, `${m.kind}: ${m.from ?? 'none'} → ${m.to} (writes blocked ${m.blockedMs} ms)`);
    return m;
  }

  private publish(): void {
    for (const n of this.nodes)
      this.leaderGauge.set(n.id === this.leader ? 1 : 0, { region: this.c.region, node: n.id });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(async () => {
      this.moving = true;
      try {
        return await fn();
      } finally {
        this.moving = false;
      }
    });
    this.busy = run.catch(() => {});
    return run;
  }
}

/** The options given (an embedder's `undefined` means "not given": the default applies). */
function definedOnly<T extends object>(c: T): Partial<T> {
  return Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) as Partial<T>;
}
