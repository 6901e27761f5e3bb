/**
 * A client's SCRAM-SHA-256 login to the router, message by message (pure: the verifier lookup's
 * answer and the server nonce are passed in). The conversation, as PostgreSQL holds it
 * (https://www.postgresql.org/docs/15/sasl-authentication.html):
 *
 *   router → AuthenticationSASL ("SCRAM-SHA-256")
 *   client → SASLInitialResponse ('p': mechanism, client-first)
 *   router → AuthenticationSASLContinue (server-first)
 *   client → SASLResponse ('p': client-final)
 *   router → AuthenticationSASLFinal (server-final), then the login goes on (AuthenticationOk)
 *
 * A role without a verifier gets the same conversation with a mock one and is refused at its end.
 */

import { BrabantError } from '../runtime/errors.ts';
import type { Lookup } from './client-access.ts';
import type { ScramKeys } from './scram.ts';
import { mockVerifier, SCRAM_SHA_256, type ScramExchange, serverFinal, serverFirst } from './scram-server.ts';
import {
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  parseSaslInitialResponse,
} from './wire.ts';

/** Longest authentication message accepted (PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH). */
export const MAX_AUTH_MESSAGE = 65_535;
const PASSWORD_MESSAGE = 'p';

export type LoginStep =
  | { kind: 'send'; bytes: Buffer }
  /** The client knows the password: `bytes` end the exchange; `keys` log in to the node as its role. */
  | { kind: 'proven'; bytes: Buffer; keys: ScramKeys }
  /** Wrong password, unknown role or no verifier (`why` is for the log, never for the client). */
  | { kind: 'refused'; why: string };

export class ScramLogin {
  private exchange: ScramExchange | undefined;

  constructor(
    private readonly role: string,
    private readonly lookup: Lookup,
    private readonly serverNonce: string,
    /** Makes the mock salts of roles without a verifier (stable for the router's life). */
    private readonly mockSecret: Buffer,
  ) {}

  /** The router's first message. */
  start(): Buffer {
    return authenticationSasl([SCRAM_SHA_256]);
  }

  /** A message from the client; throws PROTOCOL_ERROR on one that does not belong here. */
  receive(type: string, body: Buffer): LoginStep {
    if (type !== PASSWORD_MESSAGE)
      throw new BrabantError(
        'PROTOCOL_ERROR',
        `expected a SASL response during authentication, got a message of type '${type}'`,
      );
    if (this.exchange === undefined) {
      const initial = parseSaslInitialResponse(body);
      if (initial.mechanism !== SCRAM_SHA_256)
        throw new BrabantError(
          'PROTOCOL_ERROR',
          `the client chose SASL mechanism '${initial.mechanism}'; the router offers ${SCRAM_SHA_256} only`,
        );
      const found = this.lookup.kind === 'found';
      const verifier = found ? this.lookup.verifier : mockVerifier(this.role, this.mockSecret);
      const first = serverFirst(initial.data.toString('utf8'), verifier, this.serverNonce, !found);
      this.exchange = first.exchange;
      return { kind: 'send', bytes: authenticationSaslContinue(first.message) };
    }
    const outcome = serverFinal(this.exchange, body.toString('utf8'));
    if (outcome.kind === 'refused')
      return { kind: 'refused', why: this.lookup.kind === 'missing' ? this.lookup.why : outcome.reason };
    const v = this.exchange.verifier;
    return {
      kind: 'proven',
      bytes: authenticationSaslFinal(outcome.message),
      keys: { salt: v.salt, iterations: v.iterations, clientKey: outcome.clientKey, serverKey: v.serverKey },
    };
  }
}
