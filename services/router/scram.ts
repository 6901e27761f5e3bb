/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without channel binding: the keys
 * both sides derive, and the client side (pure; the nonce is passed in). The server side, for
 * the router's own clients, is scram-server.ts. PostgreSQL ignores the user name in the messages
 * (it has it from the startup message), so the client sends it empty.
 *
 *   client-first  "n,,n=,r=<client nonce>"
 *   server-first  "r=<client nonce + server nonce>,s=<salt, base64>,i=<iterations>"
 *   client-final  "c=biws,r=<nonce>,p=<proof, base64>"
 *   server-final  "v=<server signature, base64>"
 *
 *   SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)
 *   ClientKey = HMAC(SaltedPassword, "Client Key")   StoredKey = SHA-256(ClientKey)
 *   ServerKey = HMAC(SaltedPassword, "Server Key")
 *   AuthMessage = client-first-bare "," server-first "," client-final-without-proof
 *   ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)
 *   ServerSignature = HMAC(ServerKey, AuthMessage)
 */
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { BrabantError } from '../runtime/errors.ts';

export const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
export const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();
export const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((x, i) => x ^ b[i]!));

/**
 * What a password becomes for one salt and iteration count. A node stores StoredKey and
 * ServerKey (its verifier); ClientKey is what a client proves it knows.
 */
export interface ScramKeys {
  salt: Buffer;
  iterations: number;
  clientKey: Buffer;
  serverKey: Buffer;
}

export function scramKeys(password: string, salt: Buffer, iterations: number): ScramKeys {
  // (PostgreSQL applies SASLprep; NFKC is its main part and the same for ASCII passwords)
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  return { salt, iterations, clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
}

export interface ScramState {
  clientFirstBare: string;
  clientNonce: string;
}

export function clientFirst(clientNonce: string, user = ''): { message: string; state: ScramState } {
  const clientFirstBare = `n=${user},r=${clientNonce}`;
  return { message: `n,,${clientFirstBare}`, state: { clientFirstBare, clientNonce } };
}

/** The attributes of a SCRAM message ("k=v,k=v"), by their one-letter name; the first of each. */
export function scramAttributes(message: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const kv of message.split(',')) {
    if (kv.length >= 2 && kv[1] === '=' && !attrs.has(kv[0]!)) attrs.set(kv[0]!, kv.slice(2));
  }
  return attrs;
}

/**
 * Answers the server-first message; returns client-final and the server signature to expect.
 * The secret is the password, or keys already derived for this salt and iteration count (those
 * of a client the router authenticated, to log in as its role).
 */
export function clientFinal(
  state: ScramState,
  serverFirst: string,
  secret: { password: string } | { keys: ScramKeys },
): { message: string; expectedServerSignature: string } {
  const attrs = scramAttributes(serverFirst);
  const nonce = attrs.get('r');
  const salt = attrs.get('s');
  const iterations = Number(attrs.get('i'));
  if (nonce === undefined || salt === undefined || !Number.isInteger(iterations) || iterations < 1)
    throw new BrabantError('PROTOCOL_ERROR', `malformed SCRAM server-first message '${serverFirst}'`);
  if (!nonce.startsWith(state.clientNonce) || nonce.length === state.clientNonce.length)
    throw new BrabantError('PROTOCOL_ERROR', 'SCRAM server nonce does not extend the client nonce');
  const saltBytes = Buffer.from(salt, 'base64');
  const keys = 'password' in secret ? scramKeys(secret.password, saltBytes, iterations) : secret.keys;
  if (!keys.salt.equals(saltBytes) || keys.iterations !== iterations)
    throw new BrabantError(
      'SERVER_REFUSED',
      `the node's SCRAM verifier for this role (salt ${salt}, ${iterations} iterations) is not the one the client was authenticated with (salt ${keys.salt.toString('base64')}, ${keys.iterations} iterations): give the role the same verifier on every node`,
    );
  const withoutProof = `c=biws,r=${nonce}`;
  const authMessage = `${state.clientFirstBare},${serverFirst},${withoutProof}`;
  const proof = xor(keys.clientKey, hmac(sha256(keys.clientKey), authMessage));
  return {
    message: `${withoutProof},p=${proof.toString('base64')}`,
    expectedServerSignature: hmac(keys.serverKey, authMessage).toString('base64'),
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
