/**
 * The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without
 * channel binding (pure; the nonce is passed in). PostgreSQL ignores the user name in the
 * messages (it has it from the startup message), so it is sent empty.
 *
 *   client-first  "n,,n=,r=<client nonce>"
 *   server-first  "r=<client nonce + server nonce>,s=<salt, base64>,i=<iterations>"
 *   client-final  "c=biws,r=<nonce>,p=<proof, base64>"
 *   server-final  "v=<server signature, base64>"
 */
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { BrabantError } from '../runtime/errors.ts';

export interface ScramState {
  clientFirstBare: string;
  clientNonce: string;
}

export function clientFirst(clientNonce: string, user = ''): { message: string; state: ScramState } {
  const clientFirstBare = `n=${user},r=${clientNonce}`;
  return { message: `n,,${clientFirstBare}`, state: { clientFirstBare, clientNonce } };
}

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

/** Answers the server-first message; returns client-final and the server signature to expect. */
export function clientFinal(
  state: ScramState,
  serverFirst: string,
  password: string,
): { message: string; expectedServerSignature: string } {
  const attrs = new Map(
    serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as [string, string]),
  );
  const nonce = attrs.get('r');
  const salt = attrs.get('s');
  const iterations = Number(attrs.get('i'));
  if (nonce === undefined || salt === undefined || !Number.isInteger(iterations) || iterations < 1)
    throw new BrabantError('PROTOCOL_ERROR', `malformed SCRAM server-first message '${serverFirst}'`);
  if (!nonce.startsWith(state.clientNonce) || nonce.length === state.clientNonce.length)
    throw new BrabantError('PROTOCOL_ERROR', 'SCRAM server nonce does not extend the client nonce');
  const salted = pbkdf2Sync(
    password.normalize('NFKC'),
    Buffer.from(salt, 'base64'),
    iterations,
    32,
    'sha256',
  );
  const clientKey = hmac(salted, 'Client Key');
  const storedKey = createHash('sha256').update(clientKey).digest();
  const withoutProof = `c=biws,r=${nonce}`;
  const authMessage = `${state.clientFirstBare},${serverFirst},${withoutProof}`;
  const signature = hmac(storedKey, authMessage);
  const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
  const serverKey = hmac(salted, 'Server Key');
  return {
    message: `${withoutProof},p=${proof.toString('base64')}`,
    expectedServerSignature: hmac(serverKey, authMessage).toString('base64'),
  };
}

/** Checks the server-final message: the server proves it knew the password too. */
export function verifyServerFinal(serverFinal: string, expectedServerSignature: string): void {
  const v = serverFinal.split(',').find((kv) => kv.startsWith('v='));
  if (v?.slice(2) !== expectedServerSignature)
    throw new BrabantError(
      'SERVER_REFUSED',
      'the server’s SCRAM signature does not match: not the server we know',
    );
}
