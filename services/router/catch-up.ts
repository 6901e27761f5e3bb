/**
 * How a switchover waits for its target to catch up: a mark in the old leader's stream (a
 * logical message), then the target's replication origin for the old leader polled until it
 * is at or past the mark.
 *
 * Both connections are opened once per switchover and kept for its catch-up rounds and for the
 * last wait with the clients' writes held, so no TLS handshake or login runs while clients
 * wait. A connection that cannot be made at once (a node slow to answer under load) is tried
 * again until the switchover's deadline; the error then names the node and what to check.
 */
import pg from 'pg';
import { compareLsn, parseLsn } from '../protocol/lsn.ts';
import { originName } from '../protocol/names.ts';
import { BrabantError } from '../runtime/errors.ts';
import { redactUrl } from '../runtime/redact.ts';

/** A node a switchover talks to. */
export interface CatchUpNode {
  id: string;
  url: string;
}

/** The part of a pg client the catch-up uses (a fake in the unit tests). */
export interface CatchUpClient {
  connect(): Promise<unknown>;
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
  end(): Promise<unknown>;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

export type ConnectFn = (url: string, timeoutMs: number) => CatchUpClient;

/** Longest single connection attempt; attempts repeat until the switchover's deadline. */
const CONNECT_ATTEMPT_MS = 5000;
/** Pause between connection attempts. */
const CONNECT_RETRY_MS = 250;
/** How often the target's progress is read while waiting for a mark. */
const POLL_MS = 5;

const defaultConnect: ConnectFn = (url, timeoutMs) =>
  new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });

/** A connection to one node, made again if it broke since its last use. */
class Link {
  /** The open connection; dropped when it errs or a query on it fails. */
  private client: CatchUpClient | undefined;

  constructor(
    private readonly node: CatchUpNode,
    private readonly role: string,
    private readonly connect: ConnectFn,
  ) {}

  /** The open connection, connecting (again) until `deadline` if there is none. */
  async get(deadline: number): Promise<CatchUpClient> {
    if (this.client !== undefined) return this.client;
    let last: unknown;
    for (;;) {
      const left = deadline - Date.now();
      const c = this.connect(this.node.url, Math.max(100, Math.min(CONNECT_ATTEMPT_MS, left)));
      c.on('error', () => {
        if (this.client === c) void this.close();
      });
      try {
        await c.connect();
        this.client = c;
        return c;
      } catch (err) {
        last = err;
        await c.end().catch(() => {});
      }
      if (Date.now() + CONNECT_RETRY_MS >= deadline)
        throw new BrabantError(
          'SOURCE_UNAVAILABLE',
          `switchover: cannot connect to ${this.role} ${this.node.id} (${redactUrl(this.node.url)}): ` +
            `${(last as Error).message}. Is its PostgreSQL up and accepting connections? Switchover cancelled`,
          { cause: last },
        );
      await new Promise((r) => setTimeout(r, CONNECT_RETRY_MS));
    }
  }

  /** A query on the connection failed: it is made again before its next use. */
  failed(): void {
    void this.close();
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}

/** The two connections of one switchover: the old leader (`from`) and the target (`to`). */
export class CatchUpLinks {
  private readonly old: Link;
  private readonly target: Link;

  constructor(
    private readonly from: CatchUpNode,
    private readonly to: CatchUpNode,
    connect: ConnectFn = defaultConnect,
  ) {
    this.old = new Link(from, 'the leader', connect);
    this.target = new Link(to, 'the target', connect);
  }

  /** Marks the old leader's stream and waits until the target has applied up to the mark. */
  async waitCaughtUp(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const old = await this.old.get(deadline);
    const target = await this.target.get(deadline);
    const mark = await this.use(this.old, () =>
      old.query<{ lsn: string }>(
        `select pg_logical_emit_message(true, 'brabant.switchover', $1)::text as lsn`,
        [this.to.id],
      ),
    ).then((r) => r.rows[0]!.lsn);
    for (;;) {
      const p = await this.use(this.target, () => originProgress(target, originName(this.from.id)));
      if (p && compareLsn(parseLsn(p), parseLsn(mark)) >= 0) return;
      if (Date.now() > deadline) {
        throw new BrabantError(
          'TIMEOUT',
          `${this.to.id} has not applied everything ${this.from.id} committed within ${timeoutMs} ms (applied ${p ?? 'nothing'}, needed ${mark}): is apply running on ${this.to.id}? Switchover cancelled, ${this.from.id} stays leader`,
        );
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.old.close(), this.target.close()]);
  }

  private async use<T>(link: Link, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      link.failed();
      throw err;
    }
  }
}

/** What a node has applied of a source (its replication origin's progress); undefined before anything. */
export async function originProgress(c: CatchUpClient, origin: string): Promise<string | undefined> {
  const r = await c.query<{ p: string | null }>(
    'select pg_replication_origin_progress(roname, true)::text as p from pg_replication_origin where roname = $1',
    [origin],
  );
  return r.rows[0]?.p ?? undefined;
}
