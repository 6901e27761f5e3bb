/**
 * Health checks of every node (I/O): a real query with timeouts, on a schedule; plus one idle
 * watch connection per healthy node, whose loss (the server process killed, the host reset)
 * triggers a check at once instead of at the next tick, so a dead leader is seen in
 * milliseconds.
 */
import pg from 'pg';
import type { Logger } from '../runtime/log.ts';
import type { NodeHealth } from './leader.ts';

export interface NodeStatus extends NodeHealth {
  /** pg_current_wal_lsn() at the last good check: what the node had written then. */
  walLsn?: string;
  lastError?: string;
  lastOkAt?: number;
  /** When the check that gave this status began. */
  checkedFrom?: number;
}

export class HealthChecker {
  readonly status = new Map<string, NodeStatus>();
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<string>();
  /** Per node, the sequence number of the check whose answer is the current status. */
  private readonly answered = new Map<string, number>();
  private seq = 0;
  private readonly watchers = new Map<string, pg.Client>();
  private stopped = false;

  constructor(
    private readonly nodes: { id: string; url: string }[],
    private readonly opts: { intervalMs: number; timeoutMs: number; log: Logger; onChange: () => void },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.round(), this.opts.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    for (const w of this.watchers.values()) w.end().catch(() => {});
    this.watchers.clear();
  }

  /** Keeps an idle connection to a healthy node; its loss means a check now. */
  private watch(n: { id: string; url: string }): void {
    if (this.stopped || this.watchers.has(n.id)) return;
    const c = new pg.Client({
      connectionString: n.url,
      connectionTimeoutMillis: this.opts.timeoutMs,
      application_name: 'brabant-router-watch',
      keepAlive: true,
    });
    this.watchers.set(n.id, c);
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.watchers.get(n.id) === c) this.watchers.delete(n.id);
      c.end().catch(() => {});
      if (this.stopped) return;
      this.opts.log.debug({ node: n.id }, 'watch connection lost: checking now');
      void this.check(n, true);
    };
    c.on('error', onLost);
    c.on('end', onLost);
    c.connect().catch(onLost);
  }

  /** Stops watching a node that left the router's list. */
  forget(id: string): void {
    this.watchers
      .get(id)
      ?.end()
      .catch(() => {});
    this.watchers.delete(id);
    this.status.delete(id);
    this.answered.delete(id);
  }

  /** Checks a node at once, beside any scheduled check (its answer wins if it began last). */
  checkNow(id: string): Promise<void> {
    const n = this.nodes.find((x) => x.id === id);
    return n === undefined ? Promise.resolve() : this.check(n, true);
  }

  /** One check of every node; resolves when all answered or timed out. */
  async round(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.check(n)));
  }

  /**
   * One check of a node. Scheduled checks of a node do not overlap; an urgent one (its watch
   * connection was lost) runs at once beside a scheduled one. The answer of the check that
   * started last wins, so a check that began before a crash cannot undo what a later one saw.
   */
  private async check(n: { id: string; url: string }, urgent = false): Promise<void> {
    if (!urgent && this.inFlight.has(n.id)) return;
    const seq = ++this.seq;
    const startedAt = Date.now();
    if (!urgent) this.inFlight.add(n.id);
    const c = new pg.Client({
      connectionString: n.url,
      connectionTimeoutMillis: this.opts.timeoutMs,
      query_timeout: this.opts.timeoutMs,
      application_name: 'brabant-router-health',
    });
    c.on('error', () => {});
    let result: { ok: true; walLsn: string } | { ok: false; error: string };
    try {
      await c.connect();
      const r = await c.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
      result = { ok: true, walLsn: r.rows[0]!.lsn };
    } catch (err) {
      result = { ok: false, error: (err as Error).message };
    } finally {
      c.end().catch(() => {});
      if (!urgent) this.inFlight.delete(n.id);
    }
    if (this.stopped || (this.answered.get(n.id) ?? 0) > seq) return;
    this.answered.set(n.id, seq);
    const before = this.status.get(n.id);
    const next: NodeStatus = result.ok
      ? { healthy: true, walLsn: result.walLsn, lastOkAt: Date.now(), checkedFrom: startedAt }
      : {
          healthy: false,
          checkedFrom: startedAt,
          failingSince: before?.healthy === false ? before.failingSince : Date.now(),
          lastError: result.error,
          ...(before?.walLsn ? { walLsn: before.walLsn } : {}),
          ...(before?.lastOkAt ? { lastOkAt: before.lastOkAt } : {}),
        };
    this.status.set(n.id, next);
    if (next.healthy) this.watch(n);
    if (before === undefined || before.healthy !== next.healthy) {
      this.opts.log.info(
        { node: n.id, healthy: next.healthy, error: next.lastError },
        next.healthy ? 'node healthy' : 'node failing health checks',
      );
    }
    this.opts.onChange();
  }
}
