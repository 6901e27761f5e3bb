/**
 * The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), for clients logging in to the router
 * (pure: the server nonce is passed in). It checks a client's proof against a verifier as
 * PostgreSQL stores it in pg_authid.rolpassword, and recovers the client's ClientKey, with
 * which the router logs in to the node as that role (SCRAM pass-through) without ever holding
 * its password. No channel binding is offered: a client asking for it ("p=") is refused; "y"
 * (the client could bind, the server offered none) is accepted, as PostgreSQL does.
 *
 *   verifier      "SCRAM-SHA-256$<iterations>:<salt, base64>$<StoredKey, base64>:<ServerKey, base64>"
 *   client-first  gs2-header "n,," or "y,," · "n=<user, ignored>,r=<client nonce>"
 *   server-first  "r=<client nonce + server nonce>,s=<salt>,i=<iterations>"
 *   client-final  "c=<gs2-header, base64>,r=<nonce>,p=<proof, base64>"
 *   server-final  "v=<server signature, base64>"
 *
 * Malformed messages throw PROTOCOL_ERROR (the client broke the protocol); a wrong proof is a
 * refusal (wrong password). A role without a verifier gets the same exchange with a made-up
 * salt and is refused at its end, so that a client cannot tell unknown roles from wrong
 * passwords (PostgreSQL's "mock authentication").
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { BrabantError } from '../runtime/errors.ts';
import { hmac, scramAttributes, scramKeys, sha256, xor } from './scram.ts';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
/** PostgreSQL's default iteration count (scram_iterations). */
const MOCK_ITERATIONS = 4096;

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** A verifier in PostgreSQL's form, or undefined if the text is not one (an md5 hash, a password). */
export function parseVerifier(text: string): ScramVerifier | undefined {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(text);
  if (m === null) return undefined;
  const v = {
    iterations: Number(m[1]),
    salt: Buffer.from(m[2]!, 'base64'),
    storedKey: Buffer.from(m[3]!, 'base64'),
    serverKey: Buffer.from(m[4]!, 'base64'),
  };
  if (v.iterations < 1 || v.salt.length === 0 || v.storedKey.length !== 32 || v.serverKey.length !== 32)
    return undefined;
  return v;
}

export function formatVerifier(v: ScramVerifier): string {
  const b64 = (b: Buffer) => b.toString('base64');
  return `SCRAM-SHA-256$${v.iterations}:${b64(v.salt)}$${b64(v.storedKey)}:${b64(v.serverKey)}`;
}

/** The verifier of a password, as `ALTER ROLE … PASSWORD` stores it with scram-sha-256. */
export function makeVerifier(password: string, salt: Buffer, iterations: number): ScramVerifier {
  const keys = scramKeys(password, salt, iterations);
  return { iterations, salt, storedKey: sha256(keys.clientKey), serverKey: keys.serverKey };
}

/**
 * The text `ALTER ROLE … PASSWORD` takes for a password, already hashed as scram-sha-256 stores
 * it: the statement (and a statement log) never holds the password itself.
 */
export function passwordVerifier(password: string, salt: Buffer = randomBytes(16)): string {
  return formatVerifier(makeVerifier(password, salt, MOCK_ITERATIONS));
}

/** A stand-in verifier for a role that has none: the same role always gets the same salt. */
export function mockVerifier(user: string, secret: Buffer): ScramVerifier {
  const salt = createHmac('sha256', secret).update(user).digest().subarray(0, 16);
  return { iterations: MOCK_ITERATIONS, salt, storedKey: Buffer.alloc(32), serverKey: Buffer.alloc(32) };
}

/** An exchange between its first two messages. */
export interface ScramExchange {
  verifier: ScramVerifier;
  /** Refused at the end whatever the client proves (a mock verifier). */
  doomed: boolean;
  gs2Header: string;
  nonce: string;
  clientFirstBare: string;
  serverFirst: string;
}

const protocolError = (text: string) => new BrabantError('PROTOCOL_ERROR', `SCRAM: ${text}`);
/** printable ASCII but ',' (RFC 5802 "printable"). */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;

/** Reads the client-first message and answers it with server-first. */
export function serverFirst(
  clientFirst: string,
  verifier: ScramVerifier,
  serverNonce: string,
  doomed = false,
): { message: string; exchange: ScramExchange } {
  const first = clientFirst.indexOf(',');
  const second = clientFirst.indexOf(',', first + 1);
  if (first < 0 || second < 0) throw protocolError(`malformed client-first message '${clientFirst}'`);
  const flag = clientFirst.slice(0, first);
  if (flag.startsWith('p='))
    throw protocolError('the client asks for channel binding, which the router does not offer');
  if (flag !== 'n' && flag !== 'y') throw protocolError(`unknown channel binding flag '${flag}'`);
  if (second !== first + 1)
    throw protocolError('authorization identities (a=…) are not supported: log in as the role itself');
  const clientFirstBare = clientFirst.slice(second + 1);
  if (clientFirstBare.startsWith('m=')) throw protocolError('mandatory extensions (m=…) are not supported');
  // n=<user>,r=<nonce>[,<extension>=<value>]*
  const [user, r, ...extensions] = clientFirstBare.split(',');
  const clientNonce = r?.startsWith('r=') ? r.slice(2) : '';
  if (
    !user?.startsWith('n=') ||
    !PRINTABLE.test(clientNonce) ||
    !extensions.every((e) => /^[A-Za-z]=/.test(e))
  )
    throw protocolError(`malformed client-first message '${clientFirst}'`);
  const nonce = clientNonce + serverNonce;
  const message = `r=${nonce},s=${verifier.salt.toString('base64')},i=${verifier.iterations}`;
  return {
    message,
    exchange: {
      verifier,
      doomed,
      gs2Header: clientFirst.slice(0, second + 1),
      nonce,
      clientFirstBare,
      serverFirst: message,
    },
  };
}

export type ScramOutcome =
  /** The proof is right: server-final to send, and the client's key (to log in as its role). */
  | { kind: 'proven'; message: string; clientKey: Buffer }
  /** Wrong password (or no verifier): why, for the router's log only. */
  | { kind: 'refused'; reason: string };

/** Reads the client-final message: the client's proof that it knows the password. */
export function serverFinal(exchange: ScramExchange, clientFinal: string): ScramOutcome {
  const at = clientFinal.lastIndexOf(',p=');
  if (at < 0) throw protocolError('client-final message without a proof');
  const withoutProof = clientFinal.slice(0, at);
  const proof = Buffer.from(clientFinal.slice(at + 3), 'base64');
  const attrs = scramAttributes(withoutProof);
  if (!withoutProof.startsWith('c=') || attrs.get('c') !== Buffer.from(exchange.gs2Header).toString('base64'))
    throw protocolError('the channel binding of client-final is not the one of client-first');
  if (attrs.get('r') !== exchange.nonce) throw protocolError('client-final carries another nonce');
  if (proof.length !== 32) throw protocolError(`a proof of ${proof.length} bytes, expected 32`);
  const v = exchange.verifier;
  const authMessage = `${exchange.clientFirstBare},${exchange.serverFirst},${withoutProof}`;
  const clientKey = xor(proof, hmac(v.storedKey, authMessage));
  if (exchange.doomed) return { kind: 'refused', reason: 'the role has no SCRAM-SHA-256 verifier' };
  if (!timingSafeEqual(sha256(clientKey), v.storedKey)) return { kind: 'refused', reason: 'wrong password' };
  return { kind: 'proven', message: `v=${hmac(v.serverKey, authMessage).toString('base64')}`, clientKey };
}
