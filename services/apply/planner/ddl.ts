/**
 * The plan of a DDL event on a peer (pure): the statements that run it where it ran on its
 * node — under its search_path, as its role — inside the open local transaction and a savepoint,
 * so a failure undoes only it. A CONCURRENTLY statement cannot run in a transaction block: it runs
 * on its own first, and the local transaction only records the origin's progress.
 */
import type { DdlEvent } from '../../protocol/ddl.ts';
import { quoteIdent } from '../target-catalog.ts';

export const DDL_SAVEPOINT = 'brabant_ddl';

/** What the operator said of a DDL that failed here (`brabant ddl resolve`). */
export type DdlResolution = 'skip' | 'retry';

export type DdlPlan =
  /** The operator said to skip it (they changed this node's schema themselves). */
  | { kind: 'skip' }
  /** Run `statement` (one script) in the open transaction, under a savepoint. */
  | { kind: 'in-transaction'; script: string }
  /** Run `statement` alone, outside any transaction block, unless `index` exists and is valid already. */
  | { kind: 'concurrently'; statement: string; index: string | undefined };

/**
 * `runAs`: the role to run as (null: apply's own, when the event's role does not exist here or
 * apply may not become it).
 */
export function planDdl(
  ev: DdlEvent,
  ctx: { resolution: DdlResolution | undefined; runAs: string | null },
): DdlPlan {
  if (ctx.resolution === 'skip') return { kind: 'skip' };
  if (ev.concurrently) {
    const index = ev.objects.find((o) => o.type === 'index')?.identity;
    return { kind: 'concurrently', statement: ev.statement, index };
  }
  const role = ctx.runAs === null ? [] : [`set local role ${quoteIdent(ctx.runAs)}`];
  const script = [
    `set local search_path to ${ev.searchPath === '' ? "''" : ev.searchPath}`,
    ...role,
    ev.statement.trim().replace(/;+\s*$/, ''),
    ...(ctx.runAs === null ? [] : ['reset role']),
    'reset search_path',
  ].join(';\n');
  return { kind: 'in-transaction', script };
}
