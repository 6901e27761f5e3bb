/** The schema of a node's database as pg_dump prints it, for comparing nodes. */
import { execFileSync } from 'node:child_process';
import { postgresBinDir } from '../../infra/postgres/postgres.ts';

/** `pg_dump --schema-only` of the given schemas (comments and settings lines dropped). */
export function schemaDump(url: string, schemas = ['public']): string {
  const out = execFileSync(
    `${postgresBinDir()}/pg_dump`,
    ['--schema-only', '--no-owner', '--no-privileges', ...schemas.flatMap((s) => ['-n', s]), '-d', url],
    { encoding: 'utf8' },
  );
  return (
    out
      .split('\n')
      // pg_dump's \restrict lines carry a random key per run
      .filter(
        (l) =>
          !l.startsWith('--') &&
          !/^SET |^SELECT pg_catalog.set_config|^\\(un)?restrict /.test(l) &&
          l.trim() !== '',
      )
      .join('\n')
  );
}
