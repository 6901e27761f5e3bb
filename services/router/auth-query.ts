/**
 * The auth query (I/O): a role's SCRAM verifier read from the leader, as pgbouncer's auth_query
 * does, over one connection of the router's own (the user of the node URLs), opened when first
 * needed and again after a failure or a repoint. Queries wait in that connection's queue; a
 * login is rare next to the transactions, and the node's own catalog stays the one truth about
 * passwords (a changed password counts from the next login).
 */
import pg from 'pg';
import { BrabantError } from '../runtime/errors.ts';
import { sqlstateOf } from '../runtime/sqlstate.ts';
import type { Lookup } from './client-access.ts';
import { parseVerifier } from './scram-server.ts';
import { describeTarget, type Target } from './server-connection.ts';
import { pgSslOf } from './server-tls.ts';

export class AuthQuery {
  private client: Promise<pg.Client> | undefined;

  constructor(
    private readonly sql: string,
    /** The current leader (the router's own user and password). */
    private readonly target: () => Target,
    private readonly timeoutMs: number,
  ) {}

  async lookup(role: string): Promise<Lookup> {
    const where = describeTarget(this.target());
    let rows: unknown[][];
    try {
      const c = await this.connection();
      rows = (await c.query<unknown[]>({ text: this.sql, values: [role], rowMode: 'array' })).rows;
    } catch (err) {
      this.reset();
      const state = sqlstateOf(err);
      throw new BrabantError(
        state === undefined ? 'SOURCE_UNAVAILABLE' : 'PERMISSION_DENIED',
        state === undefined
          ? `the auth query could not reach ${where}: ${(err as Error).message}`
          : `the auth query (BRABANT_ROUTER_AUTH_QUERY) failed on ${where}: ${(err as Error).message} (SQLSTATE ${state}); the user of the node URLs must be able to run it (docs/router.md, "Authentication")`,
        { cause: err },
      );
    }
    const row = rows[0];
    if (row === undefined) return { kind: 'missing', why: `the auth query found no role "${role}"` };
    const secret = row.length > 1 ? row[1] : row[0];
    const verifier = typeof secret === 'string' ? parseVerifier(secret) : undefined;
    if (verifier === undefined)
      return {
        kind: 'missing',
        why: `role "${role}" has ${secret == null ? 'no password' : 'a password that is not a SCRAM-SHA-256 verifier (md5?): set it again with password_encryption = scram-sha-256'}`,
      };
    return { kind: 'found', verifier };
  }

  /** The leader changed: the next lookup asks the new one. */
  repoint(): void {
    this.reset();
  }

  close(): void {
    this.reset();
  }

  private connection(): Promise<pg.Client> {
    if (this.client !== undefined) return this.client;
    const opening: Promise<pg.Client> = (async () => {
      const t = this.target();
      const c = new pg.Client({
        host: t.host,
        port: t.port,
        user: t.user,
        database: t.dbname,
        ...(t.password === undefined ? {} : { password: t.password }),
        ssl: pgSslOf(t.tls, t.host),
        application_name: 'brabant-router-auth',
        connectionTimeoutMillis: this.timeoutMs,
        query_timeout: this.timeoutMs,
      });
      // (a connection lost later: the next lookup opens another)
      c.on('error', () => {
        if (this.client === opening) this.reset();
      });
      await c.connect();
      return c;
    })();
    this.client = opening;
    return opening;
  }

  private reset(): void {
    const c = this.client;
    this.client = undefined;
    void c?.then((x) => x.end()).catch(() => {});
  }
}
