/**
 * PostgreSQL side of the benchmarks: fresh databases with the benchmark table, the writers (bulk
 * in N-row transactions, 1-row clients, hot-key updaters), and the visibility poller that turns
 * "commit returned on the source" and "first seen on the target" into per-row lag.
 */
import pg from 'pg';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { nowMs, sleep, until } from './util.ts';

/** A PostgreSQL server the benchmark uses (a node of the stack, or an extra pglogical node). */
export interface Server {
  id: string;
  /** URL of its `postgres` database. */
  url: string;
  port: number;
  logFile?: string;
  /**
   * Leave databases in place after a run: DROP DATABASE on a server running pglogical 2.4.2
   * waits forever for its supervisor to accept a ProcSignalBarrier (it never does).
   */
  keepDatabases?: boolean;
}

export const ITEMS_SQL = `create table items (
  id bigint primary key,
  region text not null,
  qty int not null,
  payload text not null,
  updated_at timestamptz not null
)`;

/** ~100 bytes of payload, computed server-side from the id. */
export const PAYLOAD_SQL = (idExpr: string) => `rpad(md5(${idExpr}::text), 100, md5(${idExpr}::text))`;

export async function connect(url: string, appName = 'brabant-bench'): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: appName });
  await c.connect();
  c.on('error', () => {});
  return c;
}

export async function adminQuery<T extends pg.QueryResultRow = pg.QueryResultRow>(
  server: Server,
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<T>> {
  const c = await connect(server.url);
  try {
    return await c.query<T>(sql, params);
  } finally {
    await c.end().catch(() => {});
  }
}

export interface Db {
  server: Server;
  name: string;
  url: string;
  /** A client for the benchmark's own reads and set-up (not the writers). */
  client: pg.Client;
  close(): Promise<void>;
  drop(): Promise<void>;
}

/** Creates a fresh database with the items table (none with `empty`: a node about to be filled, W8). */
export async function createDb(
  server: Server,
  name: string,
  extraSql: string[] = [],
  opts: { empty?: boolean } = {},
): Promise<Db> {
  await adminQuery(server, `create database ${name}`);
  const url = withDatabase(server.url, name);
  const client = await connect(url);
  if (!opts.empty) await client.query(ITEMS_SQL);
  for (const sql of extraSql) await client.query(sql);
  const db: Db = {
    server,
    name,
    url,
    client,
    close: async () => {
      await client.end().catch(() => {});
    },
    drop: async () => {
      await client.end().catch(() => {});
      if (server.keepDatabases) return;
      // Logical slots of this database keep it from being dropped: drop them first.
      await until(
        `logical slots of ${name} on ${server.id} to be free`,
        async () => {
          const slots = await adminQuery<{ slot_name: string; active: boolean }>(
            server,
            'select slot_name, active from pg_replication_slots where database = $1',
            [name],
          );
          for (const s of slots.rows.filter((x) => !x.active))
            await adminQuery(server, 'select pg_drop_replication_slot($1)', [s.slot_name]).catch(() => {});
          return slots.rows.every((x) => !x.active);
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      ).catch(() => {});
      await adminQuery(server, `drop database if exists ${name} with (force)`);
    },
  };
  return db;
}

/**
 * Inserts ids from..from+count-1 on `url` in transactions of txRows rows (one INSERT … SELECT per
 * transaction, autocommit), on one connection. Returns the seconds it took.
 */
export async function bulkInsert(
  url: string,
  from: number,
  count: number,
  txRows: number,
  region: string,
): Promise<number> {
  const c = await connect(url, 'bench-writer');
  const started = nowMs();
  try {
    const sql = `insert into items select g, $3, (g % 1000)::int, ${PAYLOAD_SQL('g')}, clock_timestamp() from generate_series($1::bigint, $2::bigint) g`;
    for (let start = from; start < from + count; start += txRows) {
      const end = Math.min(from + count - 1, start + txRows - 1);
      await c.query({ name: 'bulk', text: sql, values: [start, end, region] });
    }
  } finally {
    await c.end().catch(() => {});
  }
  return (nowMs() - started) / 1000;
}

/** Commit-return times by id (ms), written by the writers, read by the poller. */
export class CommitTimes {
  private readonly times = new Map<number, number>();
  set(id: number, at: number): void {
    this.times.set(id, at);
  }
  get(id: number): number | undefined {
    return this.times.get(id);
  }
  get size(): number {
    return this.times.size;
  }
  ids(): IterableIterator<number> {
    return this.times.keys();
  }
}

/**
 * `clients` connections inserting 1-row transactions (autocommit) with ids from a shared counter
 * until `stop()`, recording when each commit returned. Optional total rate limit (rows/s).
 */
export class RowWriters {
  private running = true;
  private next: number;
  readonly commits = new CommitTimes();
  private done: Promise<void> | undefined;
  private failure: unknown;
  private started = 0;
  private ended = 0;

  constructor(
    private readonly url: string,
    private readonly opts: {
      clients: number;
      firstId: number;
      region: string;
      ratePerSec?: number;
      /** Count a failed insert (failed) and go on, instead of stopping every writer (W7). */
      keepGoing?: boolean;
    },
  ) {
    this.next = opts.firstId;
  }

  /** Inserts that failed (with keepGoing). */
  failed = 0;

  start(): void {
    this.started = nowMs();
    const perClientGapMs =
      this.opts.ratePerSec && this.opts.ratePerSec > 0
        ? (1000 * this.opts.clients) / this.opts.ratePerSec
        : 0;
    const one = async () => {
      const c = await connect(this.url, 'bench-writer');
      try {
        const sql = `insert into items values ($1::bigint, $2, ($1::bigint % 1000)::int, ${PAYLOAD_SQL('$1::bigint')}, clock_timestamp())`;
        let due = nowMs();
        while (this.running) {
          const id = this.next++;
          try {
            await c.query({ name: 'row', text: sql, values: [id, this.opts.region] });
            this.commits.set(id, nowMs());
          } catch (err) {
            if (!this.opts.keepGoing) throw err;
            this.failed++;
          }
          if (perClientGapMs > 0) {
            due += perClientGapMs;
            const wait = due - nowMs();
            if (wait > 0) await sleep(wait);
          }
        }
      } finally {
        await c.end().catch(() => {});
      }
    };
    this.done = Promise.all(Array.from({ length: this.opts.clients }, one))
      .then(() => {})
      .catch((err: unknown) => {
        this.failure = err;
        this.running = false;
      });
  }

  get error(): unknown {
    return this.failure;
  }

  /** Stops the writers; resolves with the number of rows committed and the seconds they wrote for. */
  async stop(): Promise<{ rows: number; seconds: number }> {
    this.running = false;
    await this.done;
    this.ended = nowMs();
    if (this.failure !== undefined) throw this.failure;
    return { rows: this.commits.size, seconds: (this.ended - this.started) / 1000 };
  }
}

/**
 * Polls the target for rows with ids in [low, high) and records when each id is first seen (the
 * time the poll's answer arrived: an upper bound of when it became visible, within one poll
 * interval plus a round trip). Only ids present in `commits` count (rows of the run).
 */
export class VisibilityPoller {
  private low: number;
  private readonly seen = new Map<number, number>();
  private running = false;
  private loop: Promise<void> | undefined;
  private failure: unknown;
  polls = 0;

  constructor(
    private readonly url: string,
    private readonly commits: CommitTimes,
    private readonly opts: { firstId: number; endId: number; intervalMs: number },
  ) {
    this.low = opts.firstId;
  }

  async start(): Promise<void> {
    const c = await connect(this.url, 'bench-poller');
    this.running = true;
    this.loop = (async () => {
      try {
        const sql = 'select id from items where id >= $1 and id < $2';
        while (this.running) {
          const res = await c.query<{ id: string }>({
            name: 'poll',
            text: sql,
            values: [this.low, this.opts.endId],
            rowMode: 'array',
          } as pg.QueryConfig);
          const at = nowMs();
          this.polls++;
          for (const r of res.rows as unknown as [string][]) {
            const id = Number(r[0]);
            if (!this.seen.has(id)) this.seen.set(id, at);
          }
          while (this.seen.has(this.low)) this.low++;
          await sleep(this.opts.intervalMs);
        }
      } catch (err) {
        this.failure = err;
      } finally {
        await c.end().catch(() => {});
      }
    })();
  }

  get error(): unknown {
    return this.failure;
  }

  /** Whether every committed id has been seen. */
  caughtUp(): boolean {
    for (const id of this.commits.ids()) if (!this.seen.has(id)) return false;
    return true;
  }

  missing(): number {
    let n = 0;
    for (const id of this.commits.ids()) if (!this.seen.has(id)) n++;
    return n;
  }

  /** Lags (ms) of every committed id seen, and the time the last one was seen. */
  lags(): { lags: Float64Array; lastSeen: number } {
    const out = new Float64Array(this.commits.size);
    let i = 0;
    let lastSeen = 0;
    for (const id of this.commits.ids()) {
      const s = this.seen.get(id);
      const c = this.commits.get(id)!;
      if (s === undefined) continue;
      out[i++] = s - c;
      if (s > lastSeen) lastSeen = s;
    }
    return { lags: out.subarray(0, i), lastSeen };
  }

  /**
   * When the last row that arrived more than `lateMs` after its commit was seen (ms), or undefined
   * when none did: from then on every row arrived within `lateMs` (W8's "caught up").
   */
  lastLateSeen(lateMs: number): number | undefined {
    let last: number | undefined;
    for (const id of this.commits.ids()) {
      const s = this.seen.get(id);
      const c = this.commits.get(id)!;
      if (s !== undefined && s - c > lateMs && (last === undefined || s > last)) last = s;
    }
    return last;
  }

  /** Rows committed more than `lateMs` before `now` that have not been seen yet. */
  lateMissing(lateMs: number, now: number): number {
    let n = 0;
    for (const id of this.commits.ids()) if (!this.seen.has(id) && now - this.commits.get(id)! > lateMs) n++;
    return n;
  }

  /** Per second of commit time from `t0`: rows, p50 and max lag (ms), to see where lag builds up. */
  timeline(t0: number): { second: number; rows: number; p50: number; max: number }[] {
    const per = new Map<number, number[]>();
    for (const id of this.commits.ids()) {
      const s = this.seen.get(id);
      const c = this.commits.get(id)!;
      if (s === undefined) continue;
      const k = Math.floor((c - t0) / 1000);
      const list = per.get(k);
      if (list === undefined) per.set(k, [s - c]);
      else list.push(s - c);
    }
    return [...per.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([second, l]) => {
        l.sort((a, b) => a - b);
        return {
          second,
          rows: l.length,
          p50: Math.round(l[l.length >> 1]!),
          max: Math.round(l[l.length - 1]!),
        };
      });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

/** Waits until the row with id `lastId` is visible and the table holds `count` rows with ids in range; returns when (ms). */
export async function waitAllVisible(
  client: pg.Client,
  range: { from: number; count: number },
  opts: {
    timeoutMs: number;
    intervalMs: number;
    abort?: () => string | undefined;
    onFirst?: (at: number) => void;
  },
): Promise<number> {
  const last = range.from + range.count - 1;
  let first = false;
  const seenLast = await until(
    `row ${last} to be visible on the target`,
    async () => {
      const r = await client.query<{ m: string | null }>(
        'select max(id)::text as m from items where id between $1 and $2',
        [range.from, last],
      );
      const at = nowMs();
      if (!first && r.rows[0]!.m !== null) {
        first = true;
        opts.onFirst?.(at);
      }
      return r.rows[0]!.m !== null && Number(r.rows[0]!.m) === last ? at : undefined;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: opts.intervalMs, ...(opts.abort ? { abort: opts.abort } : {}) },
  );
  // The last id is there; every row must be (in commit order they are; check rather than assume).
  const complete = async () => {
    const r = await client.query<{ n: string }>(
      'select count(*)::text as n from items where id between $1 and $2',
      [range.from, last],
    );
    return Number(r.rows[0]!.n) === range.count ? nowMs() : undefined;
  };
  const direct = await complete();
  if (direct !== undefined) return seenLast;
  return until(`all ${range.count} rows to be visible on the target`, complete, {
    timeoutMs: opts.timeoutMs,
    intervalMs: opts.intervalMs,
    ...(opts.abort ? { abort: opts.abort } : {}),
  });
}

/** Row count and a checksum of the whole items table (for convergence). */
export async function checksum(client: pg.Client): Promise<{ rows: number; md5: string }> {
  const r = await client.query<{ n: string; h: string }>(
    `select count(*)::text as n, md5(coalesce(string_agg(t::text, '|' order by id), '')) as h from items t`,
  );
  return { rows: Number(r.rows[0]!.n), md5: r.rows[0]!.h };
}

export async function currentLsn(client: pg.Client): Promise<string> {
  return (await client.query<{ l: string }>('select pg_current_wal_lsn()::text as l')).rows[0]!.l;
}

export async function serverVersion(server: Server): Promise<string> {
  return (await adminQuery<{ v: string }>(server, "select current_setting('server_version') as v")).rows[0]!
    .v;
}
