/**
 * Who sets a node up. Set-up — schema brabant, the publications and their event trigger, DDL
 * capture's event triggers, the grants Brabant's triggers need — takes a superuser (only one may
 * create event triggers, or add any table to a publication). `brabant node init` does it as one,
 * once per build; a service connected as a superuser does it at each start, as before node init
 * existed. A service connected as its own role (docs/security.md) may not: it only checks that
 * each step was done with this build's SQL (brabant.setup_steps), and says to run node init if not.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { BrabantError } from '../runtime/errors.ts';
import { SQLSTATE, sqlstateOf } from '../runtime/sqlstate.ts';

type Queryable = Pick<pg.Client, 'query'>;

export interface SetUpStep {
  /** e.g. `node-objects`, `publications:brabant_vl_1`. */
  name: string;
  /** A hash of the SQL the step runs (and its parameters): another build's set-up is told apart. */
  version: string;
}

/**
 * Set in a set-up transaction: DDL capture's event trigger leaves this transaction's DDL (the
 * set-up's functions, triggers and grants, each node's own) out of the stream.
 */
export const NOT_REPLICATED_HERE = "select set_config('brabant.ddl_replication', 'off', true)";

/** The version of a step: a short hash of what it runs. */
export function stepVersion(...parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\u0000');
  return h.digest('hex').slice(0, 16);
}

/** Whether this connection may set the node up (its role is a superuser). */
export async function maySetUp(db: Queryable): Promise<boolean> {
  const res = await db.query<{ s: boolean }>(
    'select rolsuper as s from pg_roles where rolname = current_user',
  );
  return res.rows[0]?.s === true;
}

/** The version a step was last done with here, or undefined. */
export async function doneVersion(db: Queryable, step: string): Promise<string | undefined> {
  try {
    const res = await db.query<{ v: string }>(
      'select version as v from brabant.setup_steps where step = $1',
      [step],
    );
    return res.rows[0]?.v;
  } catch (err) {
    // no schema brabant (or a node set up before steps were recorded): never done
    if (sqlstateOf(err) === SQLSTATE.UNDEFINED_TABLE) return undefined;
    throw err;
  }
}

/** Records that a step was done with this version (brabant.setup_steps exists by then). */
export async function recordStep(db: Queryable, step: SetUpStep): Promise<void> {
  await db.query(
    `insert into brabant.setup_steps (step, version) values ($1, $2)
     on conflict (step) do update set version = excluded.version, done_at = now(), done_by = current_user`,
    [step.name, step.version],
  );
}

/**
 * Runs `run` and records the step when this connection may set up; otherwise checks that it was
 * done with this version. Returns 'done' (it ran) or 'found' (an admin did it before).
 */
export async function setUpStep(
  db: Queryable,
  step: SetUpStep,
  run: () => Promise<void>,
): Promise<'done' | 'found'> {
  if (await maySetUp(db)) {
    await run();
    await recordStep(db, step);
    return 'done';
  }
  const found = await doneVersion(db, step.name);
  if (found === step.version) return 'found';
  const role = (await db.query<{ r: string }>('select current_user as r')).rows[0]?.r ?? '?';
  throw new BrabantError(
    'PERMISSION_DENIED',
    `node set-up step ${step.name} ${found === undefined ? 'was never done on this database' : `was done by another build of Brabant (version ${found}; this build's is ${step.version})`}, ` +
      `and role ${role} may not do it (set-up needs a superuser): run \`brabant node init NODE\` as a superuser first, ` +
      'then start the service again (docs/security.md)',
  );
}
