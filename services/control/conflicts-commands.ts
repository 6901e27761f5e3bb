/**
 * `brabant conflicts [--node N] [--table T] [--kind K] [--since …] [--limit N] [--json]`: the
 * conflict log of the topology's nodes (table brabant.conflicts, written in the local transaction
 * that resolved each conflict; the topic brabant.conflicts carries the same records for Kafka
 * tools), newest first, with both row versions, the resolution and the policy that decided.
 */
import pg from 'pg';
import { BrabantError } from '../runtime/errors.ts';
import type { Topology } from '../runtime/topology.ts';

export interface ConflictRow {
  node: string;
  id: string;
  loggedAt: string;
  kind: string;
  resolution: string;
  policy: string | null;
  table: string;
  key: unknown;
  local: { row: unknown; commitTs: string | null; node: string | null };
  remote: { row: unknown; commitTs: string; node: string; commitLsn: string };
}

export interface ConflictFilter {
  node?: string;
  table?: string;
  kind?: string;
  /** Only those logged at or after this time. */
  since?: Date;
  limit: number;
}

/** `--since`: `30s`, `10m`, `2h`, `7d` ago, or a timestamp PostgreSQL and Date both read (pure). */
export function parseSince(v: string, now = Date.now()): Date {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/.exec(v.trim());
  if (m) {
    const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(m[1]) * unit * 1000);
  }
  const d = new Date(v);
  if (Number.isNaN(d.getTime()))
    throw new BrabantError(
      'CONFIG_INVALID',
      `--since '${v}' is neither a duration (30s, 10m, 2h, 7d) nor a timestamp (2026-12-01T10:00:00Z)`,
    );
  return d;
}

/** The conflicts of the topology's nodes that match, newest first; a node that does not answer is reported in `unreachable`. */
export async function readConflicts(
  t: Topology,
  f: ConflictFilter,
): Promise<{ rows: ConflictRow[]; unreachable: { node: string; error: string }[] }> {
  if (f.node !== undefined && !t.nodes.some((n) => n.id === f.node))
    throw new BrabantError(
      'CONFIG_INVALID',
      `the topology ${t.file} has no node '${f.node}'; its nodes are ${t.nodes.map((n) => n.id).join(', ')}`,
    );
  const nodes = t.nodes.filter((n) => f.node === undefined || n.id === f.node);
  const unreachable: { node: string; error: string }[] = [];
  const all = await Promise.all(
    nodes.map(async (n) => {
      const db = new pg.Client({
        connectionString: n.postgres,
        connectionTimeoutMillis: 4000,
        statement_timeout: 10_000,
      });
      db.on('error', () => {});
      try {
        await db.connect();
        if ((await db.query(`select to_regclass('brabant.conflicts') is not null as e`)).rows[0]?.e !== true)
          return [];
        const where: string[] = [];
        const values: unknown[] = [];
        const add = (sql: string, v: unknown) => {
          values.push(v);
          where.push(sql.replace('?', `$${values.length}`));
        };
        if (f.table !== undefined)
          add(f.table.includes('.') ? 'table_name = ?' : "split_part(table_name, '.', 2) = ?", f.table);
        if (f.kind !== undefined) add('kind = ?', f.kind);
        if (f.since !== undefined) add('logged_at >= ?', f.since);
        values.push(f.limit);
        const r = await db.query(
          `select id::text, logged_at, kind, resolution, policy, table_name, key, local_row, local_commit_ts, local_node,
                  remote_row, remote_commit_ts, remote_node, remote_commit_lsn::text
             from brabant.conflicts ${where.length > 0 ? `where ${where.join(' and ')}` : ''}
            order by logged_at desc, id desc limit $${values.length}`,
          values,
        );
        return r.rows.map(
          (x): ConflictRow => ({
            node: n.id,
            id: x.id,
            loggedAt: (x.logged_at as Date).toISOString(),
            kind: x.kind,
            resolution: x.resolution,
            policy: x.policy ?? null,
            table: x.table_name,
            key: x.key,
            local: {
              row: x.local_row,
              commitTs: (x.local_commit_ts as Date | null)?.toISOString() ?? null,
              node: x.local_node,
            },
            remote: {
              row: x.remote_row,
              commitTs: (x.remote_commit_ts as Date).toISOString(),
              node: x.remote_node,
              commitLsn: x.remote_commit_lsn,
            },
          }),
        );
      } catch (err) {
        unreachable.push({ node: n.id, error: (err as Error).message });
        return [];
      } finally {
        await db.end().catch(() => {});
      }
    }),
  );
  const rows = all
    .flat()
    .sort((a, b) => b.loggedAt.localeCompare(a.loggedAt))
    .slice(0, f.limit);
  return { rows, unreachable };
}

/** One conflict as a few terminal lines: what, where, how it was resolved, and both versions (pure). */
export function renderConflict(c: ConflictRow): string {
  const row = (r: unknown) => (r === null || r === undefined ? '(none)' : JSON.stringify(r));
  return [
    `${c.loggedAt}  on ${c.node}  ${c.table} ${row(c.key)}  ${c.kind} → ${c.resolution} (policy ${c.policy ?? 'row_lww'})`,
    `  local:  ${row(c.local.row)}  written ${c.local.commitTs ?? '-'} by ${c.local.node ?? '-'}`,
    `  remote: ${row(c.remote.row)}  written ${c.remote.commitTs} by ${c.remote.node} (commit ${c.remote.commitLsn})`,
  ].join('\n');
}

export async function conflicts(o: {
  topology: Topology;
  filter: ConflictFilter;
  json: boolean;
}): Promise<number> {
  const { rows, unreachable } = await readConflicts(o.topology, o.filter);
  if (o.json) console.log(JSON.stringify({ conflicts: rows, unreachable }, null, 2));
  else {
    for (const u of unreachable)
      console.log(`node ${u.node} does not answer (${u.error}): its conflicts are not shown`);
    if (rows.length === 0) console.log('no conflicts match');
    for (const r of rows) console.log(`${renderConflict(r)}\n`);
    if (rows.length === o.filter.limit) console.log(`(the newest ${o.filter.limit}; --limit N for more)`);
  }
  return unreachable.length > 0 ? 1 : 0;
}
