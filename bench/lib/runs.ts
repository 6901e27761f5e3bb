/**
 * What every scenario's run does around its measurement: fresh databases for one run (on the
 * stack's nodes, or the pglogical nodes), a warm-up row, markers for capture's progress, and a
 * watch that fails a run early when a service died or nothing moved.
 */
import type { BrabantRun, Ctx, System } from './context.ts';
import { adminQuery, createDb, type Db, PAYLOAD_SQL, type Server } from './pg.ts';
import { bounded, StallWatch, tag, until } from './util.ts';

export const HOUR = 3_600_000;

/** Fresh databases for one run: on the stack's nodes, or on the pglogical nodes. */
export async function freshPair(ctx: Ctx, system: System, scenario: string): Promise<{ a: Db; b: Db }> {
  const t = tag();
  let a: Server = ctx.a;
  let b: Server = ctx.b;
  if (system === 'pglogical') {
    if ('unavailable' in ctx.pglogical) throw new Error(ctx.pglogical.unavailable);
    a = ctx.pglogical.a;
    b = ctx.pglogical.b;
  }
  const name = `bench_${scenario.toLowerCase()}_${system.slice(0, 3)}_${t}`;
  const da = await createDb(a, name);
  try {
    return { a: da, b: await createDb(b, name) };
  } catch (err) {
    await da.drop().catch(() => {});
    throw err;
  }
}

export async function dropPair(p: { a: Db; b: Db }): Promise<void> {
  await bounded(`dropping database ${p.a.name} on ${p.a.server.id}`, () => p.a.drop());
  await bounded(`dropping database ${p.b.name} on ${p.b.server.id}`, () => p.b.drop());
}

/** Replication was stopped while the rows were written: the target must not have any yet. */
export async function assertEmpty(b: Db): Promise<void> {
  const n = Number((await b.client.query('select count(*) from items')).rows[0].count);
  if (n !== 0) throw new Error(`replication was meant to be stopped, but B already holds ${n} rows`);
}

/** Emits a transactional logical message on the source; its LSN is below the commit LSN of that transaction. */
export async function marker(db: Db): Promise<bigint> {
  const r = await db.client.query<{ l: string }>(
    "select pg_logical_emit_message(true, 'brabant.bench', 'end')::text as l",
  );
  const [hi, lo] = r.rows[0]!.l.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** Waits until capture has committed to Kafka every event up to (and including) the marker's transaction. */
export async function waitCaptured(
  capture: { metric(n: string): Promise<number> },
  lsn: bigint,
  abort: () => string | undefined,
) {
  await until(
    'capture to commit every change to Kafka',
    async () => BigInt(Math.round(await capture.metric('brabant_capture_last_committed_lsn'))) >= lsn,
    { timeoutMs: HOUR, intervalMs: 20, abort },
  );
}

/** Inserts row `id` on the source and waits until the target shows it (pipeline warmed up, schemas registered). */
export async function warmUp(a: Db, b: Db, id: number, region: string, abort?: () => string | undefined) {
  await a.client.query(
    `insert into items values ($1::bigint, $2, 0, ${PAYLOAD_SQL('$1::bigint')}, clock_timestamp())`,
    [id, region],
  );
  await until(
    `warm-up row ${id} to reach the target`,
    async () => (await b.client.query('select 1 from items where id = $1', [id])).rowCount === 1,
    { timeoutMs: 120_000, intervalMs: 20, ...(abort ? { abort } : {}) },
  );
}

/**
 * Fails waits of a run early: when a Brabant service died, or when nothing moved for the stall
 * limit (Brabant: events captured, rows applied, rows on B; baselines: the source slots'
 * confirmed positions and rows on B, with a limit of at least 10 minutes).
 */
export function watchProgress(ctx: Ctx, system: System, brabant: BrabantRun, p: { a: Db; b: Db }) {
  const probe = async (): Promise<number> => {
    const visible = Number(
      (await p.b.client.query<{ n: string }>('select coalesce(max(id), 0)::text as n from items')).rows[0]!.n,
    );
    if (system === 'brabant') return visible + (await brabant.progress());
    const slots = await adminQuery<{ l: string }>(
      p.a.server,
      "select coalesce(sum(pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')), 0)::text as l from pg_replication_slots where database = $1",
      [p.a.name],
    );
    return visible + Number(slots.rows[0]!.l);
  };
  const limit = ctx.opts.stallSeconds * 1000;
  const watch = new StallWatch(
    system === 'brabant'
      ? 'events captured + rows applied + max id on B'
      : 'slot position on A + max id on B',
    probe,
    system === 'brabant' ? limit : Math.max(limit, 600_000),
  );
  return {
    abort: (): string | undefined =>
      (system === 'brabant' ? brabant.deathReason() : undefined) ?? watch.reason(),
    stop: () => watch.stop(),
  };
}
