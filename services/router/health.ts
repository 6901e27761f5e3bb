/** Health checks of every node (I/O): a real query with timeouts, on a schedule. */
import pg from 'pg';
import type { Logger } from '../runtime/log.ts';
import type { NodeHealth } from './leader.ts';

export interface NodeStatus extends NodeHealth {
  /** pg_current_wal_lsn() at the last good check: what the node had written then. */
  walLsn?: string;
  lastError?: string;
  lastOkAt?: number;
}

export class HealthChecker {
  readonly status = new Map<string, NodeStatus>();
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly nodes: { id: string; url: string }[],
    private readonly opts: { intervalMs: number; timeoutMs: number; log: Logger; onChange: () => void },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.round(), this.opts.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One check of every node; resolves when all answered or timed out. */
  async round(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.check(n)));
  }

  private async check(n: { id: string; url: string }): Promise<void> {
    if (this.inFlight.has(n.id)) return;
    this.inFlight.add(n.id);
    const before = this.status.get(n.id);
    const c = new pg.Client({
      connectionString: n.url,
      connectionTimeoutMillis: this.opts.timeoutMs,
      query_timeout: this.opts.timeoutMs,
      application_name: 'brabant-router-health',
    });
    c.on('error', () => {});
    let next: NodeStatus;
    try {
      await c.connect();
      const r = await c.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
      next = { healthy: true, walLsn: r.rows[0]!.lsn, lastOkAt: Date.now() };
    } catch (err) {
      next = {
        healthy: false,
        failingSince: before?.healthy === false ? before.failingSince : Date.now(),
        lastError: (err as Error).message,
        ...(before?.walLsn ? { walLsn: before.walLsn } : {}),
        ...(before?.lastOkAt ? { lastOkAt: before.lastOkAt } : {}),
      };
    } finally {
      c.end().catch(() => {});
      this.inFlight.delete(n.id);
    }
    this.status.set(n.id, next);
    if (before === undefined || before.healthy !== next.healthy) {
      this.opts.log.info(
        { node: n.id, healthy: next.healthy, error: next.lastError },
        next.healthy ? 'node healthy' : 'node failing health checks',
      );
    }
    this.opts.onChange();
  }
}
