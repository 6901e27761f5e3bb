/**
 * Client load on cluster members for the membership tests: random upserts and deletes of a
 * small key space (so the regions conflict), each in its own transaction, until stopped; and the
 * rows of a table with each row's version (commit time, and the node that wrote it) as every
 * member sees it, to compare members including their last-writer-wins versions.
 */
import type pg from 'pg';
import type { Member } from './cluster.ts';

export interface Load {
  stop(): Promise<{ writes: number; failures: number }>;
}

/** Writes to `kv(id int primary key, val text)` on `m` until stopped. */
export function writeLoad(m: Member, o: { keys: number; deleteShare?: number; pauseMs?: number }): Load {
  let running = true;
  let writes = 0;
  let failures = 0;
  const loop = (async () => {
    while (running) {
      const key = 1 + Math.floor(Math.random() * o.keys);
      try {
        if (Math.random() < (o.deleteShare ?? 0.2))
          await m.client.query('delete from kv where id = $1', [key]);
        else
          await m.client.query(
            'insert into kv values ($1, $2) on conflict (id) do update set val = excluded.val',
            [key, `${m.id}:${writes}`],
          );
        writes++;
      } catch {
        failures++;
      }
      if (o.pauseMs) await new Promise((r) => setTimeout(r, o.pauseMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { writes, failures };
    },
  };
}

/**
 * `table`'s rows as `key|row|commit time|node` lines, sorted: the node of a row is the member's
 * own id when its transaction had no origin, else the origin's node (brabant_<node>), or
 * `(a dropped origin)` once that origin was dropped (its node parted).
 */
export async function versionedRows(m: Member, table: string, key = 'id'): Promise<string[]> {
  const res = await (m.client as pg.Client).query<{ line: string }>(
    `select concat_ws('|', t.${key}, to_jsonb(t)::text, (extract(epoch from v.timestamp) * 1000000)::int8,
                      case when coalesce(v.roident, 0) = 0 then $1
                           else coalesce(substr(o.roname, 9), '(a dropped origin)') end) as line
       from ${table} t left join lateral pg_xact_commit_timestamp_origin(t.xmin) v on true
       left join pg_replication_origin o on o.roident = v.roident
      order by 1`,
    [m.id],
  );
  return res.rows.map((r) => r.line);
}
