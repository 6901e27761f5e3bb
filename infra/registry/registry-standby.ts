/**
 * A follower region's registry database: a hot standby of the primary region's registry-db,
 * made by pg_basebackup and kept up by streaming replication, through the link between regions.
 * The follower registry on it answers every id the primary handed out, from its own region,
 * while the link is cut (docs/registry.md); it refuses new schemas (a read-only database), which
 * capture then registers in the primary registry (services/protocol/schema-registry.ts).
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { BrabantError } from '../../services/runtime/errors.ts';
import { readSecretFile } from '../../services/runtime/security.ts';
import {
  isInitialized,
  makeDataDir,
  type PostgresNodeSpec,
  pgClientConfig,
  postgresBinDir,
  withDatabase,
} from '../postgres/postgres.ts';
import { waitFor } from '../processes.ts';
import { REGISTRY_DATABASE } from './registry-db.ts';

export interface StandbySpec extends PostgresNodeSpec {
  /** Where the primary registry-db is reached from this region (the link's relay). */
  primaryHost: string;
  primaryPort: number;
}

/**
 * Copies the primary (pg_basebackup -R: it follows the primary from then on) unless done already.
 * A secured primary is copied over verify-full TLS as its superuser, with the password in the
 * environment; -R keeps that connection (password included) in the copy's postgresql.auto.conf,
 * readable by PostgreSQL's OS user only, and the CA beside the copy's folder, where that user
 * may read it.
 */
export function ensureStandby(spec: StandbySpec): void {
  if (isInitialized(spec.dataDir)) return;
  const user = makeDataDir(spec.dataDir);
  let env: NodeJS.ProcessEnv | undefined;
  if (spec.security !== undefined) {
    const ca = `${spec.dataDir}.ca.pem`;
    copyFileSync(spec.security.ca, ca);
    const owner = statSync(spec.dataDir);
    chownSync(ca, owner.uid, owner.gid);
    env = {
      ...process.env,
      PGPASSWORD: readSecretFile(spec.security.adminPasswordFile, 'the registry database admin'),
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: ca,
      // no client certificate; libpq would otherwise look in (and -R keep) ~/.postgresql of the
      // user running this, which PostgreSQL's OS user may not read
      PGSSLCERT: `${spec.dataDir}.no-client-cert`,
      PGSSLKEY: `${spec.dataDir}.no-client-key`,
    };
  }
  const bin = join(postgresBinDir(), 'pg_basebackup');
  const args = [
    '-h',
    spec.primaryHost,
    '-p',
    String(spec.primaryPort),
    '-U',
    'postgres',
    '-D',
    spec.dataDir,
    '-R',
    '-X',
    'stream',
    '--no-sync',
    // a checkpoint now, not at the next scheduled one (that waited 90 s here)
    '--checkpoint=fast',
  ];
  try {
    execFileSync(
      user === undefined ? bin : 'runuser',
      user === undefined ? args : ['-u', user, '--', bin, ...args],
      {
        stdio: 'pipe',
        timeout: 120_000,
        ...(env === undefined ? {} : { env }),
      },
    );
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? String(err);
    throw new BrabantError(
      'COMPONENT_START_FAILED',
      `pg_basebackup of the registry database from ${spec.primaryHost}:${spec.primaryPort} into ${spec.dataDir} failed: ${stderr}`,
    );
  }
  // The copy carries the primary's settings; this cluster listens on its own port.
  appendFileSync(join(spec.dataDir, 'postgresql.auto.conf'), `port = ${spec.port}\nhot_standby = on\n`);
}

/**
 * Waits until the standby holds Apicurio's tables (the primary registry creates them at its first
 * start): a registry started on a read-only database without them tries to create them and exits.
 */
export async function waitForRegistryTables(
  standbyUrl: string,
  password?: string,
  timeoutMs = 60_000,
): Promise<void> {
  await waitFor(
    async () => {
      const c = new pg.Client(pgClientConfig(withDatabase(standbyUrl, REGISTRY_DATABASE), password));
      try {
        await c.connect();
        const r = await c.query("select 1 from apicurio where prop_name = 'db_version'");
        return (r.rowCount ?? 0) > 0;
      } finally {
        await c.end().catch(() => {});
      }
    },
    { what: `the registry's tables replicated to the standby ${standbyUrl}`, timeoutMs, intervalMs: 200 },
  );
}
