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

/** What this node says of the DDL's role and of the owners of the tables it touches. */
export interface RoleFacts {
  /** The event's role exists here and apply may become it (a DDL role given to node init). */
  roleUsable: boolean;
  /** Owners here of the existing tables the DDL touches, and whether apply may become each. */
  owners: { role: string; usable: boolean }[];
}

/**
 * The role a DDL replays as (pure): its own when apply may become it; else, when every table it
 * touches that exists here has one owner apply may become, that owner — a superuser's ALTER of an
 * application's table runs as the table's owner, which may alter it, and the table stays the
 * owner's; else null (apply's own role, which owns nothing: the DDL then fails and pauses its
 * stream, `why` says so).
 */
export function chooseRunAs(
  role: string,
  facts: RoleFacts,
): { runAs: string | null; why: 'own-role' | 'table-owner' | 'none' } {
  if (facts.roleUsable) return { runAs: role, why: 'own-role' };
  const owners = [...new Set(facts.owners.map((o) => o.role))];
  if (owners.length === 1 && facts.owners.every((o) => o.usable))
    return { runAs: owners[0]!, why: 'table-owner' };
  return { runAs: null, why: 'none' };
}
