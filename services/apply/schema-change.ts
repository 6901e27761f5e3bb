/**
 * A DDL event applied on this node (I/O through the executor), at its exact place in its
 * origin's stream: inside the open local transaction, so it commits with the origin's progress
 * and a redelivered DDL never runs twice. Applied under the replication-origin session and
 * `session_replication_role = replica`, it fires no event trigger here, so it is not captured
 * again. After it, the target catalog is read again, new tables get the tombstone trigger.
 *
 * A DDL that fails here (two regions added the same column with different types, an object that
 * exists only here) pauses its origin's stream — it is never skipped, and no later row is applied
 * to the wrong shape — with the failure in brabant.conflicts (kind ddl_failed), until it applies
 * on a retry or the operator resolves it (`brabant ddl resolve --skip|--retry`). The other
 * origins keep flowing.
 */
import type { ControlChange } from '../protocol/change-decoder.ts';
import { type DdlEvent, decodeDdlEvent } from '../protocol/ddl.ts';
import { formatLsn, type Lsn } from '../protocol/lsn.ts';
import { ensureDeleteTriggers, stepSequences } from '../protocol/node-schema.ts';
import { directiveFor } from '../runtime/error-policy.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { SQLSTATE, sqlstateOf } from '../runtime/sqlstate.ts';
import type { Executor } from './executor/executor.ts';
import type { ApplyMetrics } from './metrics.ts';
import type { ConflictRecord } from './outcome/conflict-log.ts';
import { chooseRunAs, DDL_SAVEPOINT, type DdlResolution, planDdl } from './planner/ddl.ts';
import type { TargetCatalog } from './target-catalog.ts';

/**
 * The stream of a source stops at a DDL that failed here: what the change stream pauses on, with
 * the conflict record the applier logs once the local transaction is rolled back.
 */
export class DdlFailed extends BrabantError {
  constructor(
    readonly source: string,
    readonly commitLsn: Lsn,
    readonly event: DdlEvent,
    readonly reason: string,
    readonly record: ConflictRecord,
  ) {
    super(
      'DDL_FAILED',
      `the DDL of ${source}'s transaction ${formatLsn(commitLsn)} failed here: ${reason}; its stream is paused there. ` +
        `Fix this node's schema, then \`brabant ddl resolve --node <this node> --retry\` (or --skip if you applied the change yourself)`,
    );
  }
}

export interface SchemaChangeContext {
  source: string;
  localNode: string;
  catalog: TargetCatalog;
  log: Logger;
  metrics: ApplyMetrics;
}

/**
 * A DDL that runs outside any transaction block (CREATE INDEX CONCURRENTLY and the like): the
 * local transaction that records its origin's progress begins only after it.
 */
export function runsOutsideTransaction(change: ControlChange): boolean {
  return decodeDdlEvent(change.content).concurrently;
}

/** Applies the DDL event `change` (of the open source transaction) in the open local transaction. */
export async function applySchemaChange(
  exec: Executor,
  ctx: SchemaChangeContext,
  change: ControlChange,
): Promise<void> {
  const ev = decodeDdlEvent(change.content);
  const commitLsn = change.tx.commitLsn;
  const [resolution, runAs] = await Promise.all([
    resolutionOf(exec, ctx.source, commitLsn),
    roleToRunAs(exec, ev, ctx.log),
  ]);
  const plan = planDdl(ev, { resolution, runAs: runAs.runAs });
  const at = { source: ctx.source, commitLsn: formatLsn(commitLsn), tags: ev.tags };
  switch (plan.kind) {
    case 'skip':
      ctx.log.warn(at, 'DDL skipped here as the operator resolved it (brabant ddl resolve --skip)');
      return;
    case 'concurrently': {
      if (plan.index !== undefined && (await validIndexExists(exec, plan.index))) return;
      // its names resolve as they did on its node
      await exec.maintain((db) =>
        db.query(`set search_path to ${ev.searchPath === '' ? "''" : ev.searchPath}`),
      );
      const done = await exec.outsideTransaction(plan.statement);
      await exec.maintain((db) => db.query('reset search_path'));
      if (!done.ok) throw await failed(ctx, change, ev, done.error, runAs.runAs);
      break;
    }
    case 'in-transaction': {
      const done = await exec.underSavepoint(DDL_SAVEPOINT, plan.script);
      if (!done.ok) throw await failed(ctx, change, ev, done.error, runAs.runAs);
      break;
    }
    default:
      plan satisfies never;
  }
  ctx.catalog.invalidate();
  // this node's upkeep, in the same transaction: tombstone triggers of new tables, the step of new sequences
  const triggers = await exec.maintain((db) => ensureDeleteTriggers(db));
  if (triggers.length > 0)
    ctx.log.info({ ...at, tables: triggers }, 'delete triggers installed on new tables');
  // renamed columns noted here too: rows the other regions wrote in the old shape land under the new name
  await exec.maintain((db) =>
    db.query(
      `select brabant.note_columns(to_regclass(format('%I.%I', t ->> 'schema', t ->> 'name'))) from jsonb_array_elements($1::jsonb) t
        where to_regclass(format('%I.%I', t ->> 'schema', t ->> 'name')) is not null`,
      [JSON.stringify(ev.tables)],
    ),
  );
  const stepped = await exec.maintain((db) => stepSequences(db));
  if (stepped.length > 0) ctx.log.info({ ...at, sequences: stepped }, 'sequences stepped for this node');
  ctx.metrics.ddlApplied.inc({ origin: ctx.source });
  ctx.log.info({ ...at, statement: ev.statement.slice(0, 200) }, 'DDL applied');
}

/** What the operator said of this source transaction's DDL, if anything. */
async function resolutionOf(
  exec: Executor,
  source: string,
  commitLsn: Lsn,
): Promise<DdlResolution | undefined> {
  const res = await exec.maintain((db) =>
    db.query<{ action: DdlResolution }>(
      'select action from brabant.ddl_resolutions where source = $1 and commit_lsn = $2::pg_lsn',
      [source, formatLsn(commitLsn)],
    ),
  );
  return res.rows[0]?.action;
}

/**
 * The role the DDL runs as here (chooseRunAs): its own, or the owner of the tables it touches,
 * when apply may become it; else null (apply's role).
 */
async function roleToRunAs(
  exec: Executor,
  ev: DdlEvent,
  log: Logger,
): Promise<{ runAs: string | null; why: string }> {
  const tables = [
    ...ev.tables.map((t) => ({ schema: t.schema, name: t.name })),
    ...ev.objects.filter((o) => o.type === 'table').map((o) => ({ identity: o.identity })),
  ];
  const res = await exec.maintain((db) =>
    db.query<{ usable: boolean; owners: { role: string; usable: boolean }[] | null }>(
      `select coalesce((select pg_has_role(current_user, r.oid, 'member') from pg_roles r where r.rolname = $1), false) as usable,
              (select jsonb_agg(distinct jsonb_build_object('role', r.rolname, 'usable', pg_has_role(current_user, r.oid, 'member')))
                 from jsonb_array_elements($2::jsonb) t
                 join pg_class c on c.oid = case when t ? 'identity' then to_regclass(t ->> 'identity')
                                                 else to_regclass(format('%I.%I', t ->> 'schema', t ->> 'name')) end
                 join pg_roles r on r.oid = c.relowner) as owners`,
      [ev.role, JSON.stringify(tables)],
    ),
  );
  const row = res.rows[0];
  const choice = chooseRunAs(ev.role, { roleUsable: row?.usable ?? false, owners: row?.owners ?? [] });
  if (choice.why === 'table-owner')
    log.info(
      { role: ev.role, runAs: choice.runAs },
      'the DDL’s role is not one apply may become here (a superuser, or not a --ddl-roles role): it runs as the owner of its tables',
    );
  else if (choice.why === 'none')
    log.warn(
      { role: ev.role },
      'the DDL’s role does not exist here or apply may not become it, nor the owner of its tables: it runs as apply’s role',
    );
  return choice;
}

/**
 * Whether the index a CONCURRENTLY statement builds is there and valid (it ran before, and the
 * progress after it was lost). An invalid one (a build that failed half-way) is dropped, to be
 * built again.
 */
async function validIndexExists(exec: Executor, identity: string): Promise<boolean> {
  const res = await exec.maintain((db) =>
    db.query<{ valid: boolean | null }>(
      'select (select indisvalid from pg_index where indexrelid = to_regclass($1)) as valid',
      [identity],
    ),
  );
  const valid = res.rows[0]?.valid ?? null;
  if (valid === false) await exec.outsideTransaction(`drop index concurrently if exists ${identity}`);
  return valid === true;
}

/**
 * A DDL that failed: one that may go through on its own (a lock, a deadlock) is thrown as it
 * is, to be applied again; any other pauses the stream, recorded once as a ddl_failed conflict.
 */
async function failed(
  ctx: SchemaChangeContext,
  change: ControlChange,
  ev: DdlEvent,
  error: Error,
  runAs: string | null,
): Promise<Error> {
  const d = directiveFor(error, { doing: `applying ${ctx.source}'s DDL` });
  if (d.kind === 'retry' || d.kind === 'reapply') return error;
  const state = sqlstateOf(error);
  // a privilege error as apply's own role: say whose DDL it was and what would let it replay
  const unowned =
    runAs === null && state === SQLSTATE.INSUFFICIENT_PRIVILEGE
      ? `; it ran as ${ev.role} on ${change.origin.node}, a role apply may not become here (a superuser, or not given to brabant node init --ddl-roles), so it ran as apply's own role, which owns nothing — run the application's DDL as the role that owns its tables and give that role to node init with --ddl-roles (docs/security.md)`
      : '';
  const reason = `${error.message}${state === undefined ? '' : ` (SQLSTATE ${state})`}${unowned}`;
  const record: ConflictRecord = {
    kind: 'ddl_failed',
    resolution: 'skip',
    table: ev.tables[0] ? `${ev.tables[0].schema}.${ev.tables[0].name}` : (ev.objects[0]?.identity ?? ''),
    key: null,
    localRow: null,
    localTs: null,
    localNode: null,
    remoteRow: { statement: ev.statement, reason },
    remoteTs: change.tx.commitTs,
    remoteNode: change.origin.node,
    remoteCommitLsn: change.tx.commitLsn,
  };
  ctx.metrics.ddlFailures.inc({ origin: ctx.source });
  return new DdlFailed(ctx.source, change.tx.commitLsn, ev, reason, record);
}
