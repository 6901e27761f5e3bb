/**
 * How far a node is behind another (I/O): the source's current WAL position minus what the
 * node's origin for it has applied, in bytes — for the progress lines of commands that wait for
 * every node (a DDL, a policy, the demo's catch-up after a cut).
 */
import pg from 'pg';
import { originName } from '../protocol/names.ts';
import { formatBytes } from './status-model.ts';

async function one<T>(url: string, sql: string, values: unknown[]): Promise<T | undefined> {
  const db = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  db.on('error', () => {});
  try {
    await db.connect();
    return (await db.query(sql, values)).rows[0]?.v as T | undefined;
  } finally {
    await db.end().catch(() => {});
  }
}

/** `wa-1 is 1.2 MiB behind vl-1`, or undefined when either cannot be read. */
export async function behind(
  source: { id: string; url: string },
  node: { id: string; url: string },
): Promise<string | undefined> {
  try {
    const [wal, applied] = await Promise.all([
      one<string>(source.url, 'select pg_current_wal_lsn()::text as v', []),
      one<string>(
        node.url,
        'select remote_lsn::text as v from pg_replication_origin_status where external_id = $1',
        [originName(source.id)],
      ),
    ]);
    if (wal === undefined || applied === undefined) return undefined;
    const bytes = await one<string>(source.url, 'select pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::text as v', [
      wal,
      applied,
    ]);
    return `${node.id} is ${formatBytes(Math.max(0, Number(bytes ?? 0)))} behind ${source.id}`;
  } catch {
    return undefined;
  }
}
