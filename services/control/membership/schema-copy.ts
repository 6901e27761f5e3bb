/**
 * The schema of a joining node, from its peer (I/O): `pg_dump --schema-only` of the peer's
 * database inside the join's snapshot (so the schema is exactly the one its rows have), without
 * schema brabant, publications and subscriptions (the node's services make its own), restored in
 * two sections: pre-data (types, tables, functions…) before the rows, post-data (indexes,
 * constraints, triggers) after them, as pg_restore does it — an index is built once over all
 * rows, faster than kept up to date row by row.
 *
 * pg_dump refuses a server of a newer major than itself; the machine's pg_dump is PostgreSQL
 * 15's (Debian) unless BRABANT_PG_BINDIR names another, so a peer of 16 or later needs that.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { postgresBinDir } from '../../../infra/postgres/postgres.ts';
import { BrabantError } from '../../runtime/errors.ts';
import { redactUrl } from '../../runtime/redact.ts';
import { keepTocEntry } from './join-plan.ts';

const run = promisify(execFile);

export interface SchemaDump {
  /** Restores one section into the joining node. */
  restore(section: 'pre-data' | 'post-data', targetUrl: string): Promise<void>;
  /** Objects in the dump (for the progress line). */
  entries: number;
  remove(): void;
}

/** The major of pg_dump and of the peer; refuses a peer pg_dump cannot dump. */
async function checkDumpVersion(bin: string, peerUrl: string): Promise<void> {
  const { stdout } = await run(join(bin, 'pg_dump'), ['--version']);
  const mine = Number(/(\d+)\.\d+/.exec(stdout)?.[1] ?? 0);
  const db = new pg.Client({ connectionString: peerUrl });
  await db.connect();
  try {
    const v = Number(
      (await db.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0]!.v,
    );
    const theirs = Math.floor(v / 10000);
    if (theirs > mine)
      throw new BrabantError(
        'PREREQUISITE_MISSING',
        `the peer runs PostgreSQL ${theirs} and the pg_dump here is ${mine}'s (${bin}), which cannot dump a newer server: ` +
          `install pg_dump ${theirs} or later (e.g. Debian package postgresql-client-${theirs}) and set BRABANT_PG_BINDIR to its folder, ` +
          `or join from a peer running PostgreSQL ${mine} or older`,
      );
  } finally {
    await db.end().catch(() => {});
  }
}

/** Dumps the peer's schema as of `snapshot` (see the module comment). */
export async function dumpSchema(peerUrl: string, snapshot: string): Promise<SchemaDump> {
  const bin = postgresBinDir();
  await checkDumpVersion(bin, peerUrl);
  const dir = mkdtempSync(join(tmpdir(), 'brabant-join-'));
  const file = join(dir, 'schema.dump');
  const list = join(dir, 'schema.list');
  try {
    await run(join(bin, 'pg_dump'), [
      '--schema-only',
      '--format=custom',
      `--snapshot=${snapshot}`,
      '--exclude-schema=brabant',
      '--no-publications',
      '--no-subscriptions',
      `--file=${file}`,
      `--dbname=${peerUrl}`,
    ]);
    const { stdout } = await run(join(bin, 'pg_restore'), ['--list', file], { maxBuffer: 256 * 1024 * 1024 });
    const kept = stdout.split('\n').filter(keepTocEntry);
    writeFileSync(list, kept.join('\n'));
    return {
      entries: kept.filter((l) => /^\d+;/.test(l)).length,
      async restore(section, targetUrl) {
        try {
          await run(join(bin, 'pg_restore'), [
            `--section=${section}`,
            `--use-list=${list}`,
            '--exit-on-error',
            '--single-transaction',
            `--dbname=${targetUrl}`,
            file,
          ]);
        } catch (err) {
          throw new BrabantError(
            'JOIN_FAILED',
            `restoring the peer's schema (${section}) into ${redactUrl(targetUrl)} failed: ${stderrOf(err)}; ` +
              'the roles that own or are granted the objects must exist on the joining node (roles are not replicated: create them first)',
          );
        }
      },
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    if (err instanceof BrabantError) throw err;
    throw new BrabantError('JOIN_FAILED', `dumping the peer's schema failed: ${stderrOf(err)}`);
  }
}

function stderrOf(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n').slice(0, 6).join(' | ');
}
