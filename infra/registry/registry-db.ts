/**
 * Where the local registry keeps its schemas: a PostgreSQL cluster of its own (`registry-db`), or
 * a database given by BRABANT_REGISTRY_DB_URL. Not a database on a Brabant node: nodes are stopped,
 * failed over and upgraded while the registry must keep answering, and a node's database is
 * replicated by Brabant, which itself needs the registry to decode what it replicates.
 */
import pg from 'pg';
import { passwordVerifier } from '../../services/router/scram-server.ts';
import { BrabantError } from '../../services/runtime/errors.ts';
import { pgClientConfig } from '../postgres/postgres.ts';

/** What Apicurio's SQL storage is given (its REGISTRY_DATASOURCE_* variables). */
export interface RegistryStorage {
  jdbcUrl: string;
  username: string;
  password: string;
  /** A file holding the password instead (the secured stack's: the state file then holds none). */
  passwordFile?: string;
}

/** The database the stack's own registry-db cluster holds the registry's tables in. */
export const REGISTRY_DATABASE = 'registry';

/**
 * Settings of the registry-db cluster: small (a few tables of schemas), and wal_level=replica so
 * that a standby in another region can follow it (docs/registry.md, one registry per region).
 */
export function registryDbSettings(port: number): Record<string, string | number> {
  return {
    listen_addresses: "'127.0.0.1'",
    port,
    unix_socket_directories: "''",
    wal_level: 'replica',
    max_wal_senders: 4,
    max_connections: 40,
    shared_buffers: "'16MB'",
    work_mem: "'2MB'",
    max_wal_size: "'256MB'",
    log_min_messages: 'warning',
    log_line_prefix: "'%m [%p] %d '",
  };
}

/**
 * A postgres:// URL as Apicurio's JDBC settings: the driver takes host, port, database and
 * parameters (sslmode, …) in its own URL form, and the user and password apart.
 */
export function registryStorageFromUrl(url: string): RegistryStorage {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BrabantError(
      'CONFIG_INVALID',
      `BRABANT_REGISTRY_DB_URL '${url}' is not a URL; give postgres://user:password@host:5432/database`,
    );
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new BrabantError(
      'CONFIG_INVALID',
      `BRABANT_REGISTRY_DB_URL '${url}' must start with postgres://, e.g. postgres://user:password@host:5432/registry`,
    );
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database === '') {
    throw new BrabantError(
      'CONFIG_INVALID',
      `BRABANT_REGISTRY_DB_URL '${url}' names no database; add one, e.g. postgres://${u.host}/registry`,
    );
  }
  const host = u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname;
  return {
    jdbcUrl: `jdbc:postgresql://${host}:${u.port || '5432'}/${encodeURIComponent(database)}${u.search}`,
    username: decodeURIComponent(u.username) || 'postgres',
    password: decodeURIComponent(u.password),
  };
}

/**
 * Creates the registry's database on the registry-db cluster unless it is there already. With
 * `owner` (the secured stack), as a database of that role's own, which the registry logs in as
 * (SCRAM): it needs no superuser.
 */
export async function ensureRegistryDatabase(
  adminUrl: string,
  opts: { adminPassword?: string; owner?: { role: string; password: string } } = {},
): Promise<void> {
  const c = new pg.Client(pgClientConfig(adminUrl, opts.adminPassword));
  await c.connect();
  try {
    const owner = opts.owner;
    if (owner !== undefined) {
      const role = `"${owner.role.replace(/"/g, '""')}"`;
      await c.query(
        `do $$ begin if not exists (select 1 from pg_roles where rolname = '${owner.role.replace(/'/g, "''")}') then create role ${role} login; end if; end $$`,
      );
      // the verifier, not the password, in the statement (a statement log shows no secret)
      await c.query(`alter role ${role} with login password '${passwordVerifier(owner.password)}'`);
    }
    const found = await c.query('select 1 from pg_database where datname = $1', [REGISTRY_DATABASE]);
    if (found.rowCount === 0)
      await c.query(
        `create database ${REGISTRY_DATABASE}${owner === undefined ? '' : ` owner "${owner.role.replace(/"/g, '""')}"`}`,
      );
  } finally {
    await c.end();
  }
}
