/**
 * The replication-origin session of an apply connection (I/O): the origin `brabant_<source>` is
 * created if missing and taken by this session, so every local transaction it commits records
 * the source's progress atomically with the data, and applied rows carry the source's commit
 * time and origin (what last-writer-wins reads). PostgreSQL lets only one session hold an
 * origin: a second apply of the node is fenced by PostgreSQL itself.
 */
import type pg from 'pg';
import { type Lsn, parseLsn, ZERO_LSN } from '../../protocol/lsn.ts';
import { BrabantError } from '../../runtime/errors.ts';

/** How long a just-killed apply's backend may still hold the origin before this one is refused. */
const TAKE_ATTEMPTS = 20;
const TAKE_RETRY_MS = 500;

export interface OriginSession {
  /** The origin's progress: the last source commit LSN applied. */
  progress: Lsn;
  /** The origin's id on this server (what pg_xact_commit_timestamp_origin reports). */
  roident: number;
}

export async function takeOrigin(db: pg.Client, origin: string, localNode: string): Promise<OriginSession> {
  await db.query(
    `select pg_replication_origin_create($1) where not exists (select 1 from pg_replication_origin where roname = $1)`,
    [origin],
  );
  for (let attempt = 1; ; attempt++) {
    try {
      await db.query('select pg_replication_origin_session_setup($1)', [origin]);
      break;
    } catch (err) {
      const msg = (err as Error).message;
      if (!/already active/.test(msg)) throw err;
      if (attempt >= TAKE_ATTEMPTS) {
        throw new BrabantError(
          'FENCED',
          `replication origin ${origin} is in use by another session (${msg}): another apply for ${localNode} is running; stop it first`,
        );
      }
      await new Promise((r) => setTimeout(r, TAKE_RETRY_MS));
    }
  }
  const res = await db.query<{ p: string | null; id: number }>(
    'select pg_replication_origin_progress($1, true)::text as p, (select roident::int from pg_replication_origin where roname = $1) as id',
    [origin],
  );
  return { progress: res.rows[0]?.p ? parseLsn(res.rows[0].p) : ZERO_LSN, roident: res.rows[0]!.id };
}

/**
 * Session settings of an apply connection (as PostgreSQL's own apply workers run). JIT is off:
 * apply's statements touch a few rows each, but their generic plans (unnest of arrays, lateral
 * lookups) are estimated above jit_above_cost, and compiling them with LLVM took ~230 ms per
 * execution — one applied transaction every quarter second in the demo. Prepared statements keep
 * their generic plan (plan_cache_mode): a custom plan knows each array parameter's length and so
 * always looks cheaper, and PostgreSQL planned every execution again (relation sizes read from
 * disk each time); 5,000 TPC-B-like applied transactions took 20–27 % less backend CPU with the
 * generic plans (a nested loop of key lookups, which is what these statements want).
 */
export const APPLY_SESSION_OPTIONS =
  '-c session_replication_role=replica -c synchronous_commit=off -c jit=off -c plan_cache_mode=force_generic_plan -c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c standard_conforming_strings=on';
