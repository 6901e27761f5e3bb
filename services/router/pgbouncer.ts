/**
 * pgbouncer as the router's data path: its configuration (pure), the process, and the admin
 * console commands the router uses (PAUSE, RELOAD, RESUME). Applications connect to pgbouncer's
 * port with the database alias; the alias points at the region's write leader.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import {
  currentUserIsRoot,
  type ManagedProcess,
  spawnManaged,
  waitFor,
  waitUntilReady,
  which,
} from '../../infra/processes.ts';
import { BrabantError } from '../runtime/errors.ts';

export interface Target {
  host: string;
  port: number;
  dbname: string;
  user: string;
}

export function targetOf(url: string): Target {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    dbname: decodeURIComponent(u.pathname.slice(1)) || 'postgres',
    user: decodeURIComponent(u.username) || 'postgres',
  };
}

/** pgbouncer's server_login_retry: after a failed login it refuses new transactions this long. */
export const LOGIN_RETRY_MS = 100;

export interface BouncerSettings {
  listenPort: number;
  /** The database name applications use. */
  alias: string;
  poolSize: number;
  dir: string;
}

/** pgbouncer.ini for a leader (pure). Transaction pooling: PAUSE waits only for transactions in flight. */
export function renderIni(s: BouncerSettings, leader: Target): string {
  return `; written by the Brabant router; the [databases] entry follows the write leader
[databases]
${s.alias} = host=${leader.host} port=${leader.port} dbname=${leader.dbname} user=${leader.user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${s.listenPort}
unix_socket_dir =
auth_type = trust
auth_file = ${join(s.dir, 'users.txt')}
admin_users = ${leader.user}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = ${s.poolSize}
server_connect_timeout = 1
server_login_retry = ${LOGIN_RETRY_MS / 1000}
query_wait_timeout = 60
server_lifetime = 3600
ignore_startup_parameters = extra_float_digits,options
pidfile = ${join(s.dir, 'pgbouncer.pid')}
logfile =
log_connections = 0
log_disconnections = 0
`;
}

export class Bouncer {
  private proc: ManagedProcess | undefined;
  private leader: Target | undefined;

  constructor(
    private readonly s: BouncerSettings,
    private readonly binary: string,
  ) {}

  get iniPath(): string {
    return join(this.s.dir, 'pgbouncer.ini');
  }

  async start(leader: Target): Promise<void> {
    if (!which(this.binary) && !this.binary.startsWith('/')) {
      throw new BrabantError(
        'PREREQUISITE_MISSING',
        `pgbouncer (${this.binary}) was not found: run \`bash infra/setup.sh\` (Debian package pgbouncer)`,
      );
    }
    mkdirSync(this.s.dir, { recursive: true });
    this.leader = leader;
    writeFileSync(join(this.s.dir, 'users.txt'), `"${leader.user}" ""\n`);
    writeFileSync(this.iniPath, renderIni(this.s, leader));
    const asRoot = currentUserIsRoot();
    if (asRoot) {
      // pgbouncer refuses to run as root
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      for (const f of [this.s.dir, this.iniPath, join(this.s.dir, 'users.txt')]) chownSync(f, uid, gid);
    }
    this.proc = spawnManaged({
      name: `pgbouncer :${this.s.listenPort}`,
      command: this.binary,
      args: [this.iniPath],
      logFile: join(this.s.dir, 'pgbouncer.log'),
      ...(asRoot ? { runAs: 'postgres' } : {}),
    });
    const proc = this.proc;
    await waitUntilReady(proc, () =>
      waitFor(
        async () => {
          await this.admin('SHOW VERSION');
          return true;
        },
        { what: `pgbouncer on port ${this.s.listenPort}`, timeoutMs: 15_000, process: proc },
      ),
    );
  }

  /** Runs one admin console command (simple query protocol). */
  async admin(command: string, timeoutMs = 10_000): Promise<pg.QueryResult> {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: this.s.listenPort,
      user: this.leader?.user ?? 'postgres',
      database: 'pgbouncer',
      connectionTimeoutMillis: 2000,
      query_timeout: timeoutMs,
    });
    c.on('error', () => {});
    await c.connect();
    try {
      return await c.query(command);
    } finally {
      await c.end().catch(() => {});
    }
  }

  /** Points the alias at a new leader: rewrite the configuration, then RELOAD (pooled connections to the old one are closed). */
  async repoint(leader: Target): Promise<void> {
    this.leader = leader;
    writeFileSync(this.iniPath, renderIni(this.s, leader));
    await this.admin('RELOAD');
  }

  async stop(): Promise<void> {
    await this.proc?.stop(5_000);
  }
}
