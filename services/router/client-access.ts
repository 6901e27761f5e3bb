/**
 * What the router asks of its clients, from its options: TLS (a certificate and key, and
 * whether plaintext is refused), how they authenticate (trust, or SCRAM-SHA-256 against a
 * verifier source), and the limits that keep one client from starving the others. Built once at
 * start; every problem is a CONFIG_INVALID that names the option and the fix. The user list
 * file is parsed here (pure); the auth query runs in auth-query.ts.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { clientAccessConfig } from './config.ts';
import { parseVerifier, type ScramVerifier } from './scram-server.ts';

export type TlsOffer =
  /** SSL requests answered 'N'. */
  | { mode: 'off' }
  /** TLS for clients that ask; `require`: plaintext clients are refused. */
  | { mode: 'allow' | 'require'; context: SecureContext };

export type VerifierSource =
  | { kind: 'file'; file: string; users: ReadonlyMap<string, ScramVerifier> }
  /** Run on the leader as the user of the node URLs, with the role name as $1. */
  | { kind: 'query'; sql: string };

export type ClientAuth = { kind: 'trust' } | { kind: 'scram'; source: VerifierSource };

export interface ClientAccess {
  tls: TlsOffer;
  auth: ClientAuth;
  maxClients: number;
  /** 0: no limit per role. */
  maxClientsPerUser: number;
  startupTimeoutMs: number;
  /** Largest length a logged-in client's message may declare. */
  maxMessageBytes: number;
}

/** What a verifier source says of a role. */
export type Lookup =
  | { kind: 'found'; verifier: ScramVerifier }
  /** Unknown role, or no SCRAM verifier: the client is refused (`why` goes to the log only). */
  | { kind: 'missing'; why: string };

const invalid = (text: string) => new BrabantError('CONFIG_INVALID', text);

export function clientAccessOf(c: ConfigOf<typeof clientAccessConfig>): ClientAccess {
  return {
    tls: tlsOffer(c),
    auth: clientAuth(c),
    maxClients: c.maxClients,
    maxClientsPerUser: c.maxClientsPerUser,
    startupTimeoutMs: c.startupTimeoutMs,
    maxMessageBytes: c.maxMessageBytes,
  };
}

function tlsOffer(c: ConfigOf<typeof clientAccessConfig>): TlsOffer {
  if (c.tls === 'off') return { mode: 'off' };
  if ((c.tlsCert === '') !== (c.tlsKey === ''))
    throw invalid(
      'BRABANT_ROUTER_TLS_CERT and BRABANT_ROUTER_TLS_KEY go together: set both (the certificate and its key) or neither',
    );
  if (c.tlsCert === '') {
    if (c.tls === 'require')
      throw invalid(
        'BRABANT_ROUTER_TLS=require needs a certificate: set BRABANT_ROUTER_TLS_CERT and BRABANT_ROUTER_TLS_KEY to PEM files',
      );
    return { mode: 'off' };
  }
  const cert = readConfigured('BRABANT_ROUTER_TLS_CERT', c.tlsCert);
  const key = readConfigured('BRABANT_ROUTER_TLS_KEY', c.tlsKey);
  try {
    return { mode: c.tls, context: createSecureContext({ cert, key }) };
  } catch (err) {
    throw invalid(
      `BRABANT_ROUTER_TLS_CERT ${c.tlsCert} and BRABANT_ROUTER_TLS_KEY ${c.tlsKey} are not a PEM certificate and its private key (${(err as Error).message})`,
    );
  }
}

function clientAuth(c: ConfigOf<typeof clientAccessConfig>): ClientAuth {
  if (c.auth === 'trust') {
    if (c.authQuery !== '' || c.authFile !== '')
      throw invalid(
        `${c.authQuery !== '' ? 'BRABANT_ROUTER_AUTH_QUERY' : 'BRABANT_ROUTER_AUTH_FILE'} is set but BRABANT_ROUTER_AUTH=trust lets clients in without a password: set BRABANT_ROUTER_AUTH=scram`,
      );
    return { kind: 'trust' };
  }
  if (c.authQuery !== '' && c.authFile !== '')
    throw invalid('set one of BRABANT_ROUTER_AUTH_QUERY and BRABANT_ROUTER_AUTH_FILE, not both');
  if (c.authFile !== '') {
    const users = parseUserList(readConfigured('BRABANT_ROUTER_AUTH_FILE', c.authFile), c.authFile);
    return { kind: 'scram', source: { kind: 'file', file: c.authFile, users } };
  }
  if (c.authQuery === '')
    throw invalid(
      "BRABANT_ROUTER_AUTH=scram needs where the verifiers are: BRABANT_ROUTER_AUTH_QUERY (e.g. 'select rolname, rolpassword from pg_authid where rolname = $1') or BRABANT_ROUTER_AUTH_FILE",
    );
  if (!c.authQuery.includes('$1'))
    throw invalid(`BRABANT_ROUTER_AUTH_QUERY must use $1 for the role name: ${c.authQuery}`);
  return { kind: 'scram', source: { kind: 'query', sql: c.authQuery } };
}

function readConfigured(option: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw invalid(`${option}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
}

/**
 * A user list: one role a line, `"role" "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"`
 * (a `"` inside a name doubled, as in pgbouncer's userlist.txt); blank lines and lines starting
 * with `#` or `;` are comments. Only SCRAM verifiers: the router never holds a password.
 */
export function parseUserList(text: string, file: string): Map<string, ScramVerifier> {
  const users = new Map<string, ScramVerifier>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const where = `${file} line ${i + 1}`;
    const m = /^"((?:[^"]|"")+)"\s+"((?:[^"]|"")*)"$/.exec(line);
    if (m === null) throw invalid(`${where} is not of the form "role" "SCRAM-SHA-256$…"`);
    const role = m[1]!.replaceAll('""', '"');
    const verifier = parseVerifier(m[2]!);
    if (verifier === undefined)
      throw invalid(
        `${where}: role "${role}" has no SCRAM-SHA-256 verifier; the router takes only verifiers (select rolpassword from pg_authid where rolname = '${role}', after setting its password with password_encryption = scram-sha-256)`,
      );
    if (users.has(role)) throw invalid(`${where}: role "${role}" is listed twice`);
    users.set(role, verifier);
  });
  return users;
}

/** What a user list says of a role. */
export function lookUpListed(users: ReadonlyMap<string, ScramVerifier>, role: string): Lookup {
  const verifier = users.get(role);
  return verifier === undefined
    ? { kind: 'missing', why: `role "${role}" is not in the user list` }
    : { kind: 'found', verifier };
}
