/**
 * PostgreSQL nodes for the local stack: initdb with the settings Brabant needs
 * (wal_level=logical, track_commit_timestamp=on, slots and WAL senders), small memory so four
 * nodes fit on two cores, started as the `postgres` OS user when we run as root. PostgreSQL 15
 * from Debian by default; a node of another major (`major`) runs the server programs majors.ts
 * fetched.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { BrabantError } from '../../services/runtime/errors.ts';
import { readSecretFile } from '../../services/runtime/security.ts';
import {
  currentUserIsRoot,
  type ManagedProcess,
  spawnManaged,
  waitFor,
  waitUntilReady,
} from '../processes.ts';
import { shutdownPlan } from '../shutdown.ts';
import { DEFAULT_MAJOR, ensureMajor } from './majors.ts';
import { adminPwfile, type PostgresSecuritySpec, secureNode } from './postgres-security.ts';

export interface PostgresNodeSpec {
  name: string;
  port: number;
  dataDir: string;
  logFile: string;
  /** A secured node (TLS, SCRAM for every role, plaintext refused); absent: plaintext with trust. */
  security?: PostgresSecuritySpec;
  /** PostgreSQL major version of the node's server programs (default 15, Debian's). */
  major?: number;
}

export interface RunningPostgres {
  name: string;
  port: number;
  dataDir: string;
  /** URL of the `postgres` database; tests create their own databases from it. */
  url: string;
  process: ManagedProcess;
}

const OS_USER = 'postgres';

/** Settings every node gets (postgresql.conf include). */
export function nodeSettings(port: number): Record<string, string | number> {
  return {
    listen_addresses: "'127.0.0.1'",
    port,
    unix_socket_directories: "''",
    wal_level: 'logical',
    track_commit_timestamp: 'on',
    max_replication_slots: 64,
    max_wal_senders: 64,
    max_worker_processes: 16,
    max_logical_replication_workers: 8,
    max_connections: 200,
    shared_buffers: "'64MB'",
    work_mem: "'4MB'",
    maintenance_work_mem: "'32MB'",
    max_wal_size: "'1GB'",
    wal_sender_timeout: "'30s'",
    logical_decoding_work_mem: "'32MB'",
    log_min_messages: 'warning',
    log_line_prefix: "'%m [%p] %d '",
  };
}

/**
 * The folder of the server programs of `major`: Debian's PostgreSQL 15 (or BRABANT_PG_BINDIR) by
 * default, the fetched ones of another major (fetched now if missing).
 */
export function postgresBinDir(major: number = DEFAULT_MAJOR): string {
  if (major !== DEFAULT_MAJOR) return ensureMajor(major);
  const candidates = [process.env.BRABANT_PG_BINDIR, '/usr/lib/postgresql/15/bin'].filter(
    (d): d is string => d !== undefined && d !== '',
  );
  for (const dir of candidates) if (existsSync(join(dir, 'initdb'))) return dir;
  try {
    const dir = execFileSync('pg_config', ['--bindir']).toString().trim();
    if (existsSync(join(dir, 'initdb'))) return dir;
  } catch {
    /* fall through */
  }
  throw new BrabantError(
    'PREREQUISITE_MISSING',
    'PostgreSQL 15 server programs (initdb, postgres) were not found; run `bash infra/setup.sh` ' +
      '(installs Debian package postgresql-15) or set BRABANT_PG_BINDIR to their folder',
  );
}

/** The OS user PostgreSQL runs as: `postgres` when we are root (it refuses root), else us (undefined). */
export function postgresOsUser(): string | undefined {
  if (!currentUserIsRoot()) return undefined;
  try {
    execFileSync('id', ['-u', OS_USER], { stdio: 'ignore' });
  } catch {
    throw new BrabantError(
      'PREREQUISITE_MISSING',
      `PostgreSQL cannot run as root and there is no '${OS_USER}' OS user; run \`bash infra/setup.sh\``,
    );
  }
  return OS_USER;
}

export function isInitialized(dataDir: string): boolean {
  return existsSync(join(dataDir, 'PG_VERSION'));
}

/**
 * A new data folder (mode 0700) owned by the OS user PostgreSQL runs as; returns that user
 * (undefined: ourselves). For initdb and for pg_basebackup of a standby.
 */
export function makeDataDir(dataDir: string): string | undefined {
  const user = postgresOsUser();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (user !== undefined) {
    const uid = Number(execFileSync('id', ['-u', user]).toString());
    const gid = Number(execFileSync('id', ['-g', user]).toString());
    chownSync(dataDir, uid, gid);
  }
  return user;
}

/**
 * initdb a new cluster; the folder must not hold one already (the caller decides about reuse).
 * `settings` default to a Brabant node's; the registry's own cluster passes smaller ones.
 */
export function initNode(spec: PostgresNodeSpec, settings = nodeSettings(spec.port)): void {
  const bin = postgresBinDir(spec.major);
  const user = makeDataDir(spec.dataDir);
  // secured: the superuser's password from a file PostgreSQL's OS user may read, removed after
  const pwfile = spec.security === undefined ? undefined : adminPwfile(spec, user);
  const auth = pwfile === undefined ? ['--auth=trust'] : ['--auth=scram-sha-256', `--pwfile=${pwfile}`];
  const args = ['-D', spec.dataDir, ...auth, '--username=postgres', '--encoding=UTF8', '--no-sync'];
  try {
    const cmd = user === undefined ? join(bin, 'initdb') : 'runuser';
    const cmdArgs = user === undefined ? args : ['-u', user, '--', join(bin, 'initdb'), ...args];
    execFileSync(cmd, cmdArgs, { stdio: 'pipe', env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? String(err);
    throw new BrabantError(
      'COMPONENT_START_FAILED',
      `initdb of ${spec.name} in ${spec.dataDir} failed: ${stderr}`,
    );
  } finally {
    if (pwfile !== undefined) rmSync(pwfile, { force: true });
  }
  if (spec.security !== undefined) {
    Object.assign(settings, secureNode(spec.dataDir, spec.security, user));
  }
  const conf = Object.entries(settings)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n');
  writeFileSync(join(spec.dataDir, 'brabant.conf'), `# written by Brabant's local stack\n${conf}\n`);
  execFileSync('sh', ['-c', `echo "include 'brabant.conf'" >> '${join(spec.dataDir, 'postgresql.conf')}'`]);
}

export async function startNode(spec: PostgresNodeSpec, timeoutMs = 60_000): Promise<RunningPostgres> {
  const bin = postgresBinDir(spec.major);
  const user = postgresOsUser();
  // The port in brabant.conf wins unless given here too; pass it so a reused folder follows the spec.
  const proc = spawnManaged({
    name: `postgres ${spec.name}`,
    command: join(bin, 'postgres'),
    args: ['-D', spec.dataDir, '-p', String(spec.port)],
    logFile: spec.logFile,
    ...(user === undefined ? {} : { runAs: user }),
    // Fast shutdown, never smart: connected clients must not keep a node from stopping.
    stopPlan: shutdownPlan('postgres'),
    dataDir: spec.dataDir,
  });
  const url = nodeUrl(spec.port, spec.security);
  const password =
    spec.security === undefined
      ? undefined
      : readSecretFile(spec.security.adminPasswordFile, 'the admin password');
  await waitUntilReady(proc, () =>
    waitFor(
      async () => {
        const client = new pg.Client({ ...pgClientConfig(url, password), connectionTimeoutMillis: 1000 });
        try {
          await client.connect();
          await client.query('select 1');
          return true;
        } finally {
          await client.end().catch(() => {});
        }
      },
      {
        what: `PostgreSQL node ${spec.name} on port ${spec.port}`,
        timeoutMs,
        process: proc,
        intervalMs: 200,
      },
    ),
  );
  return { name: spec.name, port: spec.port, dataDir: spec.dataDir, url, process: proc };
}

/** The admin URL of a node: TLS with the server's certificate checked on a secured node. */
export function nodeUrl(port: number, security: PostgresSecuritySpec | undefined): string {
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return security === undefined
    ? url
    : `${url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(security.ca)}`;
}

/**
 * node-postgres options of a URL and its password: a URL without one parses to an empty password
 * that beats an explicit `password` option, so the password goes into the URL — in memory only,
 * never logged (every log line is cleared of URL passwords anyway: runtime/redact.ts).
 */
export function pgClientConfig(url: string, password?: string): pg.ClientConfig {
  if (password === undefined) return { connectionString: url };
  const u = new URL(url);
  u.password = encodeURIComponent(password);
  return { connectionString: u.toString() };
}

/** Replace the database in a postgres:// URL. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
