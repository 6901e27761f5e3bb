/**
 * Session parameters under transaction pooling (pure). A client's server connection changes
 * from one transaction to the next, so the settings a client chose (in its startup message, or
 * with SET for those PostgreSQL reports back) travel with the client: before its transaction
 * starts on a server connection whose settings differ, the proxy sets them there.
 */
import { BrabantError } from '../runtime/errors.ts';

/** Parameters PostgreSQL reports to clients (ParameterStatus), so a SET by a client is seen. */
const REPORTED = [
  'client_encoding',
  'DateStyle',
  'IntervalStyle',
  'TimeZone',
  'standard_conforming_strings',
  'application_name',
];
/** Parameters a startup message may carry that PostgreSQL does not report (node-postgres sends these). */
const STARTUP_ONLY = ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'];
const CANONICAL = new Map([...REPORTED, ...STARTUP_ONLY].map((n) => [n.toLowerCase(), n] as const));

/** Startup parameters accepted and dropped: the server default serves (as with pgbouncer's ignore_startup_parameters). */
const IGNORED = new Set(['extra_float_digits']);

/** The value meaning "the server's default" (SET … TO DEFAULT). */
export const DEFAULT = '\0default';

export type Vars = Map<string, string>;

/** The canonical name of a tracked parameter, or undefined if it is not tracked. */
export function trackedName(name: string): string | undefined {
  return CANONICAL.get(name.toLowerCase());
}

/** A fresh server connection's settings: what it reported at login, the server default for the rest. */
export function serverVars(reported: Vars): Vars {
  const vars: Vars = new Map();
  for (const name of CANONICAL.values()) vars.set(name, reported.get(name) ?? DEFAULT);
  return vars;
}

/** A client's settings: the server defaults, overridden by what its startup message asks for. */
export function clientVars(startup: Map<string, string>, defaults: Vars): Vars {
  const vars: Vars = new Map(defaults);
  vars.set('application_name', '');
  for (const [name, value] of startup) {
    if (name === 'user' || name === 'database' || IGNORED.has(name)) continue;
    const canonical = trackedName(name);
    if (canonical === undefined)
      throw new BrabantError(
        'CONFIG_INVALID',
        `startup parameter '${name}' is not supported by the router (transaction pooling): set it per role (ALTER ROLE … SET) or with SET LOCAL inside each transaction`,
      );
    vars.set(canonical, value);
  }
  return vars;
}

/** The SET statements that give a server connection the client's settings ('' if they match). */
export function setStatements(want: Vars, have: Vars): string {
  const sets: string[] = [];
  for (const [name, value] of want) {
    if (have.get(name) === value) continue;
    sets.push(`SET "${name}" TO ${value === DEFAULT ? 'DEFAULT' : `'${value.replaceAll("'", "''")}'`};`);
  }
  return sets.join(' ');
}
