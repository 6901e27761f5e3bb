/**
 * W6's load and probes of the router (bench/w6.ts runs them): clients writing one-row
 * transactions through it, paced or with think time, every commit and failure recorded; pgbench's
 * `select 1` throughput; and the round trip of one statement through it and straight to the node.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { postgresBinDir } from '../../infra/postgres/postgres.ts';
import { PAYLOAD_SQL } from './pg.ts';
import { nowMs, sleep } from './util.ts';

/** Clients writing one-row transactions through the router; every commit time and failure is recorded. */
export class RouterLoad {
  readonly ok: number[] = [];
  readonly failed: { at: number; error: string }[] = [];
  private running = true;
  private done: Promise<void> | undefined;
  private startedAt = 0;
  private stoppedAt = 0;

  constructor(
    private readonly port: number,
    private readonly database: string,
    private readonly opts: {
      clients: number;
      /** Pause after each transaction (ms), when no rate is set. */
      thinkMs: number;
      /** Total transactions per second of all clients, paced (0: thinkMs instead). */
      ratePerSec: number;
      nextId: () => number;
      region: string;
    },
  ) {}

  start(): void {
    this.startedAt = nowMs();
    const sql = `insert into items values ($1::bigint, $2, ($1::bigint % 1000)::int, ${PAYLOAD_SQL('$1::bigint')}, clock_timestamp())`;
    // paced: each client has its slots, 1/rate × clients apart; after a stall it runs behind and
    // writes without pausing until it catches up (the transactions an open load queued meanwhile)
    const gapMs = this.opts.ratePerSec > 0 ? (1000 * this.opts.clients) / this.opts.ratePerSec : 0;
    const worker = async (n: number) => {
      let c: pg.Client | undefined;
      let due = this.startedAt + (gapMs * n) / this.opts.clients;
      while (this.running) {
        try {
          if (c === undefined) {
            c = new pg.Client({
              host: '127.0.0.1',
              port: this.port,
              user: 'postgres',
              database: this.database,
              connectionTimeoutMillis: 10_000,
              application_name: 'bench-w6',
            });
            c.on('error', () => {});
            await c.connect();
          }
          // unnamed statements: the router pools by transaction, so a client's server changes between them
          await c.query(sql, [this.opts.nextId(), this.opts.region]);
          this.ok.push(nowMs());
          if (gapMs > 0) {
            due += gapMs;
            const wait = due - nowMs();
            if (wait > 0) await sleep(wait);
          } else if (this.opts.thinkMs > 0) await sleep(this.opts.thinkMs);
        } catch (err) {
          this.failed.push({ at: nowMs(), error: (err as Error).message });
          await c?.end().catch(() => {});
          c = undefined;
          // as applications do: a short pause before trying again
          await sleep(100);
        }
      }
      await c?.end().catch(() => {});
    };
    this.done = Promise.all(Array.from({ length: this.opts.clients }, (_, n) => worker(n))).then(() => {});
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    if (this.stoppedAt === 0) this.stoppedAt = nowMs();
  }

  /** Committed transactions per second over the whole load. */
  rate(): number {
    return this.ok.length / (((this.stoppedAt || nowMs()) - this.startedAt) / 1000);
  }

  /** Committed transactions per second between two instants. */
  rateBetween(from: number, to: number): number {
    return this.ok.filter((t) => t >= from && t <= to).length / ((to - from) / 1000);
  }

  /** Longest time without a committed transaction between two instants (ms). */
  maxGap(from: number, to: number): number {
    const ts = this.ok.filter((t) => t >= from && t <= to).sort((a, b) => a - b);
    let gap = 0;
    let prev = from;
    for (const t of [...ts, to]) {
      gap = Math.max(gap, t - prev);
      prev = t;
    }
    return gap;
  }

  /** Failures between two instants, with their distinct messages. */
  failures(from = 0, to = Number.POSITIVE_INFINITY): { count: number; errors: string[] } {
    const f = this.failed.filter((x) => x.at >= from && x.at <= to);
    return { count: f.length, errors: [...new Set(f.map((x) => x.error))].slice(0, 5) };
  }
}

export const PGBENCH_CLIENTS = 16;
export const PGBENCH_SECONDS = 5;

/**
 * pgbench (PostgreSQL's own load generator, a separate C process) running `select 1`
 * transactions: tps. Asynchronous: the router under test runs in this process.
 */
export async function pgbench(to: {
  host: string;
  port: number;
  user: string;
  database: string;
}): Promise<number> {
  const script = join(tmpdir(), `brabant-w6-pgbench-${process.pid}.sql`);
  writeFileSync(script, 'select 1;\n');
  const args = ['-n', '-f', script, '-c', String(PGBENCH_CLIENTS), '-j', '2', '-T', String(PGBENCH_SECONDS)];
  args.push('-h', to.host, '-p', String(to.port), '-U', to.user, to.database);
  const { stdout: out } = await promisify(execFile)(join(postgresBinDir(), 'pgbench'), args, {
    env: { ...process.env, PGAPPNAME: 'bench-w6-pgbench' },
    timeout: (PGBENCH_SECONDS + 30) * 1000,
  });
  const m = /^tps = ([\d.]+)/m.exec(out);
  if (m === null) throw new Error(`pgbench printed no tps: ${out.slice(-500)}`);
  return Number(m[1]);
}

/** Round trips of `select $1::int` (one-statement transactions) via the router and direct, p50/p99 in ms. */
export async function roundTrips(router: pg.ClientConfig, direct: pg.ClientConfig) {
  const clients = { router: new pg.Client(router), direct: new pg.Client(direct) };
  const times: Record<'router' | 'direct', number[]> = { router: [], direct: [] };
  await clients.router.connect();
  await clients.direct.connect();
  try {
    for (const c of Object.values(clients))
      for (let i = 0; i < 200; i++) await c.query('select $1::int', [i]);
    for (let block = 0; block < 4; block++) {
      for (const which of ['router', 'direct'] as const) {
        for (let i = 0; i < 500; i++) {
          const t = nowMs();
          await clients[which].query('select $1::int', [i]);
          times[which].push(nowMs() - t);
        }
      }
    }
  } finally {
    await clients.router.end().catch(() => {});
    await clients.direct.end().catch(() => {});
  }
  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  };
  return {
    router: { p50: pct(times.router, 50), p99: pct(times.router, 99), n: times.router.length },
    direct: { p50: pct(times.direct, 50), p99: pct(times.direct, 99), n: times.direct.length },
  };
}
