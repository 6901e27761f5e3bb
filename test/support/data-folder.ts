/**
 * A node's data folder in a test's own PostgreSQL servers (cluster.ts, nodeServers): a base backup
 * of it (pg_basebackup, as a DBA takes one), and the folder replaced by a backup or lost
 * altogether, the server started again on what is there (a fresh initdb when nothing is).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { makeDataDir, postgresBinDir } from '../../infra/postgres/postgres.ts';
import type { Stack } from '../../infra/stack.ts';
import { startPart, stopPart } from '../../infra/stack-control.ts';
import { readState } from '../../infra/stack-state.ts';

function dataDirOf(servers: Stack, id: string): string {
  const r = readState(servers.workDir)?.pids.find((p) => p.id === id);
  if (r === undefined || r.kind !== 'postgres')
    throw new Error(`no PostgreSQL server ${id} in ${servers.workDir}`);
  return r.spec.dataDir;
}

/** pg_basebackup of server `id` (WAL streamed, so it starts on its own) into a folder beside its data. */
export function baseBackup(servers: Stack, id: string, name: string): string {
  const dir = join(servers.workDir, 'backups', name);
  rmSync(dir, { recursive: true, force: true });
  // enterable by the OS user PostgreSQL runs as (makeDataDir would make it 0700 and ours)
  mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
  const user = makeDataDir(dir);
  const port = servers.regions.flatMap((r) => r.nodes).find((n) => n.id === id)!.port;
  const bin = join(postgresBinDir(), 'pg_basebackup');
  const args = [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-U',
    'postgres',
    '-D',
    dir,
    '-X',
    'stream',
    '--checkpoint=fast',
  ];
  execFileSync(
    user === undefined ? bin : 'runuser',
    user === undefined ? args : ['-u', user, '--', bin, ...args],
    {
      stdio: 'pipe',
      timeout: 120_000,
    },
  );
  return dir;
}

/** Stops server `id`, puts `backup` in place of its data folder (or nothing: a lost folder), starts it. */
export async function replaceDataFolder(
  servers: Stack,
  id: string,
  backup: string | undefined,
): Promise<void> {
  const dataDir = dataDirOf(servers, id);
  await stopPart(servers.workDir, id);
  rmSync(dataDir, { recursive: true, force: true });
  if (backup !== undefined) renameSync(backup, dataDir);
  await startPart(servers.workDir, id);
}
