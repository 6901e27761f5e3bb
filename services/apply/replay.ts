/**
 * Dead letters re-applied once their cause is fixed (`brabant deadletters reapply ID`): the
 * command leaves a request in `brabant.dead_letter_actions` on the target node; apply picks it up
 * and applies the change through its normal path — the full strategy's planner, conflict
 * resolution and policy, executor and conflict log — on the connection that holds the source's
 * replication origin, between two of that source's transactions.
 *
 * Order: the replayed change keeps its original commit time and origin
 * (`pg_replication_origin_xact_setup(original LSN, original commit time)`), so last-writer-wins
 * puts it where it would have landed had it applied in time: a newer version of the row (from any
 * node) wins and the replay is logged as a conflict (keep_local); an older one is overwritten; a
 * delta column adds its increment. The origin's progress never moves back (PostgreSQL only
 * advances it), so nothing of the live stream is applied again.
 *
 * Exactly once: the request is marked done by a statement inside the same local transaction as
 * the replayed rows (the executor holds the commit back for it), so a crash leaves either both or
 * neither; a request already done matches no row and the transaction is rolled back. A replay
 * that fails (the cause is not fixed, or the row would be dead-lettered again) is rolled back
 * whole and the request marked failed with the reason; the dead letter stays open.
 */
import type pg from 'pg';
import type { ChangeDecoder, RowChange } from '../protocol/change-decoder.ts';
import { lsn, parseLsn, ZERO_LSN } from '../protocol/lsn.ts';
import { type TextValue, UNCHANGED } from '../protocol/table-schema.ts';
import { BrabantError, describeError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { MetricsRegistry } from '../runtime/metrics.ts';
import { Executor } from './executor/executor.ts';
import type { PreparedStatements } from './executor/prepared-statements.ts';
import { FullPath, type FullPathContext } from './full-path.ts';
import { type ApplyMetrics, applyMetrics } from './metrics.ts';
import type { TxOutcome } from './outcome/outcome.ts';
import { literal } from './planner/script.ts';
import type { SideTopics } from './side-topics.ts';
import type { TargetCatalog } from './target-catalog.ts';

export type ReplayResult = { ok: true; outcome: TxOutcome } | { ok: false; reason: string };

/** An executor that sends `finish` in place of the commit and leaves the transaction open. */
class HeldCommit extends Executor {
  /** Rows `finish` touched (1: the request was still open), once the commit was reached. */
  finished: number | undefined;
  constructor(
    db: pg.Client,
    statements: PreparedStatements,
    private readonly finish: string,
  ) {
    super(db, statements);
  }
  override async send(parts: string[]): Promise<pg.QueryResult[]> {
    if (parts[parts.length - 1] !== 'commit') return super.send(parts);
    const res = await super.send([...parts.slice(0, -1), this.finish]);
    this.finished = res[res.length - 1]!.rowCount ?? 0;
    return res;
  }
}

/**
 * Applies `changes` (one source transaction) on `db`, which holds the source's origin session,
 * and commits only with `finish` having marked the request done.
 */
export async function replayTransaction(
  p: { db: pg.Client; statements: PreparedStatements; ctx: Omit<FullPathContext, 'metrics'>; source: string },
  changes: RowChange[],
  finish: string,
  /** A statement that records what the outcome was (its conflicts), run in the same transaction. */
  note?: (outcome: TxOutcome) => string | undefined,
): Promise<ReplayResult> {
  const exec = new HeldCommit(p.db, p.statements, finish);
  const state = {
    source: p.source,
    applied: ZERO_LSN,
    lockTables: undefined,
    reportedDrift: new Set<string>(),
    schemaChanges: 0,
  };
  // its own counters: the real ones count what commits (the caller, from the outcome)
  const full = new FullPath(exec, state, { ...p.ctx, metrics: applyMetrics(new MetricsRegistry()) });
  const undo = async (reason: string): Promise<ReplayResult> => {
    await p.db.query('rollback').catch(() => {});
    // a commit of this session must not carry the replay's origin position
    await p.db.query('select pg_replication_origin_xact_reset()').catch(() => {});
    return { ok: false, reason };
  };
  let outcome: TxOutcome | undefined;
  try {
    for (const c of changes) outcome = (await full.handle(c)) ?? outcome;
  } catch (err) {
    return undo(describeError(err));
  }
  if (outcome === undefined || exec.finished === undefined)
    return undo('the change did not make a whole transaction');
  if (outcome.deadLetters.length > 0)
    return undo(`it would be dead-lettered again: ${outcome.deadLetters.map((d) => d.reason).join('; ')}`);
  if (exec.finished !== 1) return undo('the request was handled meanwhile');
  // in the same transaction as the request's "done": whoever sees it done sees how it resolved
  const noted = note?.(outcome);
  if (noted !== undefined) await p.db.query(noted);
  await p.db.query('commit');
  return { ok: true, outcome };
}

/** The statement that marks request `id` done, as the replay's last (pure). */
export function finishStatement(id: string, detail: string): string {
  return `update brabant.dead_letter_actions set state = 'done', done_at = now(), detail = ${literal(detail)} where id = ${literal(id)} and action = 'reapply' and state = 'requested'`;
}

type Json = Record<string, unknown>;

const value = (v: unknown): TextValue => {
  if (v === null || v === undefined) return null;
  if (v === '(unchanged toast)' || (typeof v === 'object' && (v as Json).unchangedToast === true))
    return UNCHANGED;
  if (typeof v === 'string') return v;
  throw new BrabantError(
    'UNDECODABLE',
    `a value of the dead letter is neither text nor null: ${JSON.stringify(v)}`,
  );
};
const row = (r: unknown): Record<string, TextValue> | null =>
  r === null || r === undefined
    ? null
    : Object.fromEntries(Object.entries(r as Json).map(([k, v]) => [k, value(v)]));

/**
 * The change a request holds, as apply's RowChange: `apply` (a row apply could not apply: the
 * decoded change as its dead letter has it), `capture` (a change capture could not send: the raw
 * change, whose key is the target table's primary key), `framed` (a record apply could not
 * decode: its bytes, decoded now).
 */
export async function requestedChange(
  format: string,
  payload: unknown,
  source: string,
  deps: { catalog: TargetCatalog; decoder: ChangeDecoder },
): Promise<RowChange> {
  const p = payload as Json;
  switch (format) {
    case 'apply': {
      const tx = p.tx as Json;
      return {
        kind: 'row',
        origin: p.origin as RowChange['origin'],
        tx: {
          xid: BigInt(tx.xid as string),
          commitLsn: lsn(BigInt(tx.commitLsn as string)),
          commitTs: BigInt(tx.commitTs as string),
          index: Number(tx.index),
          last: true,
        },
        op: p.op as RowChange['op'],
        schema: p.schema as string,
        table: p.table as string,
        key: p.key as RowChange['key'],
        before: row(p.before),
        after: row(p.after),
      };
    }
    case 'capture': {
      const [schema, table] = String(p.table).split('.') as [string, string];
      const tx = p.tx as Json;
      const change = p.change as Json;
      const t = await deps.catalog.table(schema, table);
      if (t === undefined)
        throw new BrabantError('CATALOG_MISMATCH', `table ${p.table} does not exist on this node`);
      if (t.primaryKey.length === 0)
        throw new BrabantError(
          'CATALOG_MISMATCH',
          `table ${p.table} has no primary key here to find the row by`,
        );
      const before = row(change.before);
      const after = row(change.after);
      const keyRow = change.op === 'INSERT' ? after : (before ?? after);
      const key = Object.fromEntries(t.primaryKey.map((k) => [k, keyRow?.[k] ?? null])) as Record<
        string,
        string | null
      >;
      if (Object.values(key).some((v) => v === null || typeof v !== 'string'))
        throw new BrabantError(
          'UNDECODABLE',
          `the dead letter does not hold the key (${t.primaryKey.join(', ')}) of its row`,
        );
      return {
        kind: 'row',
        origin: { region: String(p.region), node: String(p.node) },
        tx: {
          xid: BigInt(String(tx.xid)),
          commitLsn: parseLsn(String(tx.commitLsn)),
          commitTs: BigInt(String(tx.commitTs)),
          index: Number(tx.index),
          last: true,
        },
        op: change.op as RowChange['op'],
        schema,
        table,
        key,
        before: change.oldKind === 'old' ? before : null,
        after,
      };
    }
    case 'framed': {
      const c = await deps.decoder.decode(Buffer.from(String(payload), 'base64'));
      if (c.kind !== 'row')
        throw new BrabantError('UNDECODABLE', `the record is a ${c.control} event, not a row`);
      if (c.origin.node !== source)
        throw new BrabantError('UNDECODABLE', `the record is of ${c.origin.node}, not ${source}`);
      return { ...c, tx: { ...c.tx, last: true } };
    }
    default:
      throw new BrabantError('CONFIG_INVALID', `unknown dead-letter format '${format}'`);
  }
}

/** What the replayer needs of an applier (OriginApplier.replay). */
export interface Replayer {
  replay(
    changes: RowChange[],
    finish: string,
    note?: (outcome: TxOutcome) => string | undefined,
  ): Promise<ReplayResult | 'busy'>;
}

/**
 * Polls the node's requests and re-applies each through its source's applier, every `periodMs`
 * (the timer returned; clear it to stop).
 */
export function serveReplays(d: {
  control: Pick<pg.Client, 'query'>;
  applierFor: (source: string) => Promise<Replayer>;
  catalog: TargetCatalog;
  decoder: ChangeDecoder;
  sideTopics: SideTopics;
  metrics: ApplyMetrics;
  log: Logger;
  periodMs: number;
}): NodeJS.Timeout {
  let running = false;
  const once = async () => {
    const requests = await d.control.query<{ id: string; source: string; format: string; payload: unknown }>(
      `select id, source, format, payload from brabant.dead_letter_actions
        where action = 'reapply' and state = 'requested' order by requested_at limit 20`,
    );
    for (const r of requests.rows) {
      let result: ReplayResult | 'busy';
      try {
        const change = await requestedChange(r.format, r.payload, r.source, d);
        const applier = await d.applierFor(r.source);
        const detail = `re-applied ${change.op} of ${change.schema}.${change.table} ${JSON.stringify(change.key)} at its original commit time`;
        result = await applier.replay([change], finishStatement(r.id, detail), (o) =>
          o.conflicts.length === 0
            ? undefined
            : `update brabant.dead_letter_actions set detail = detail || ${literal(`; resolved as ${o.conflicts.map((c) => `${c.kind} → ${c.resolution}`).join(', ')}`)} where id = ${literal(r.id)}`,
        );
      } catch (err) {
        result = { ok: false, reason: describeError(err) };
      }
      if (result === 'busy') continue; // a source transaction is open: next time
      if (result.ok) {
        const o = result.outcome;
        for (const c of o.conflicts) d.metrics.conflicts.inc({ kind: c.kind, resolution: c.resolution });
        d.metrics.rows.inc({ origin: r.source, action: 'reapplied' }, o.rows);
        d.metrics.reapplied.inc({ origin: r.source });
        await d.sideTopics.publish(r.source, [o]);
        d.log.info({ id: r.id, source: r.source, conflicts: o.conflicts.length }, 'dead letter re-applied');
      } else {
        await d.control.query(
          `update brabant.dead_letter_actions set state = 'failed', done_at = now(), detail = $2 where id = $1 and state = 'requested'`,
          [r.id, result.reason],
        );
        d.log.warn(
          { id: r.id, source: r.source, reason: result.reason },
          'dead letter could not be re-applied; it stays open',
        );
      }
    }
  };
  return setInterval(() => {
    if (running) return;
    running = true;
    once()
      .catch((err) =>
        d.log.warn({ err: describeError(err) }, 're-applying dead letters failed; trying again'),
      )
      .finally(() => {
        running = false;
      });
  }, d.periodMs);
}
