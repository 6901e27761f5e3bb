/**
 * A client connection's login (I/O), before its first query, in the order PostgreSQL holds it
 * (https://www.postgresql.org/docs/15/protocol-flow.html#id-1.10.6.7.3):
 *
 *   1. encryption requests: an SSLRequest is answered 'S' and the TLS handshake follows when the
 *      router has a certificate (else 'N'); a GSSENCRequest is answered 'N'. A cancel request
 *      is passed on and the connection closes.
 *   2. the startup message: refused if TLS is required and this connection is plaintext, or if
 *      the database or role is not served;
 *   3. authentication: trust, or SCRAM-SHA-256 (client-auth.ts) against the role's verifier;
 *      a refusal here is sent before any server connection is used for the client;
 *   4. admission by the proxy (the role's place under the limits, its first server connection,
 *      the client's settings), then the welcome (AuthenticationOk, parameters, backend key,
 *      ReadyForQuery) and the relay.
 *
 * The whole login has one deadline. Bad bytes end it with a FATAL that says why (08P01).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import { BrabantError, describeError, isBrabantError } from '../runtime/errors.ts';
import { SQLSTATE, type Sqlstate } from '../runtime/sqlstate.ts';
import type { ClientAccess, Lookup } from './client-access.ts';
import { MAX_AUTH_MESSAGE, ScramLogin } from './client-auth.ts';
import type { ScramKeys } from './scram.ts';
import { DEFAULT, type Vars } from './session-params.ts';
import {
  authenticationOk,
  backendKeyData,
  errorResponse,
  parameterStatus,
  readyForQuery,
  type StartupPacket,
  StartupReader,
} from './wire.ts';

/** Why a login was refused: its metric label. */
export type RefusalReason =
  | 'protocol'
  | 'tls_required'
  | 'not_served'
  | 'auth_failed'
  | 'too_many_clients'
  | 'too_many_for_role'
  | 'startup_timeout'
  | 'unavailable'
  | 'settings';

/** A login refused: the FATAL the client gets, and why (for the metric). */
export interface Refusal {
  sqlstate: Sqlstate;
  text: string;
  reason: RefusalReason;
}

/** What a client's login needs from the proxy. */
export interface LoginHost {
  readonly access: ClientAccess;
  /** Makes the mock salts of roles without a verifier. */
  readonly mockSecret: Buffer;
  cancel(pid: number, secret: number): void;
  /** Whether a startup message is served at all (database, role), before authentication. */
  served(params: Map<string, string>): Refusal | undefined;
  /** The role's verifier (with SCRAM); throws if the router cannot tell now. */
  lookup(role: string): Promise<Lookup>;
  /**
   * After authentication (`keys`: what the client proved, with SCRAM): serves the client, or
   * refuses it. `handOver` gives the bytes the client sent behind its login.
   */
  admit(
    socket: Socket,
    params: Map<string, string>,
    keys: ScramKeys | undefined,
    handOver: () => Buffer,
  ): Promise<Refusal | undefined>;
  /** A login was refused (counted and logged; `why` is never told the client). */
  refused(refusal: Refusal, role: string | undefined, why?: string): void;
}

/** How long a client has to read its last bytes (a FATAL) before the router closes the connection. */
const CLOSE_GRACE_MS = 1000;

/**
 * Ends a client connection after `bytes` (its FATAL), and closes it even if the client never
 * closes its side: a client that does not would otherwise keep its place under the limits.
 */
export function endConnection(socket: Socket, bytes?: Buffer): void {
  if (bytes === undefined) socket.end();
  else socket.end(bytes);
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

/** Sends a refusal and ends the connection. */
export function refuse(socket: Socket, r: Refusal): void {
  endConnection(socket, errorResponse('FATAL', r.sqlstate, r.text));
}

/** Runs the login of a new client connection to its end (served, refused, or gone). */
export function logIn(socket: Socket, host: LoginHost): void {
  const conn = new LoginConnection(socket);
  const deadline = setTimeout(() => {
    const r: Refusal = {
      sqlstate: SQLSTATE.QUERY_CANCELED,
      reason: 'startup_timeout',
      text: `canceling the login: not completed within ${host.access.startupTimeoutMs} ms (BRABANT_ROUTER_STARTUP_TIMEOUT_MS)`,
    };
    host.refused(r, undefined);
    // in the middle of a TLS handshake there is no one to tell
    if (conn.handshaking) conn.socket.destroy();
    else refuse(conn.socket, r);
  }, host.access.startupTimeoutMs);
  void converse(conn, host)
    .then((r) => {
      if (r !== undefined && !conn.socket.destroyed) {
        host.refused(r.refusal, r.role, r.why);
        refuse(conn.socket, r.refusal);
      }
    })
    .catch((err: unknown) => {
      if (err instanceof ConnectionGone || conn.socket.destroyed) return;
      const r: Refusal = isBrabantError(err, 'PROTOCOL_ERROR')
        ? { sqlstate: SQLSTATE.PROTOCOL_VIOLATION, reason: 'protocol', text: describeError(err) }
        : { sqlstate: SQLSTATE.CONNECTION_FAILURE, reason: 'unavailable', text: describeError(err) };
      host.refused(r, undefined);
      refuse(conn.socket, r);
    })
    .finally(() => clearTimeout(deadline));
}

type Outcome = undefined | { refusal: Refusal; role?: string; why?: string };

async function converse(conn: LoginConnection, host: LoginHost): Promise<Outcome> {
  const { tls } = host.access;
  let packet: StartupPacket = await conn.next(() => conn.reader.next());
  while (packet.kind === 'ssl' || packet.kind === 'gssenc') {
    if (conn.encrypted)
      throw new BrabantError('PROTOCOL_ERROR', 'an encryption request over a connection already encrypted');
    if (packet.kind === 'ssl' && tls.mode !== 'off') {
      // bytes behind the request would pass for bytes that came through TLS (CVE-2021-23214)
      if (conn.reader.buffered > 0)
        throw new BrabantError('PROTOCOL_ERROR', 'received unencrypted data after the SSL request');
      conn.socket.write('S');
      await conn.startTls(tls.context);
    } else conn.socket.write('N');
    packet = await conn.next(() => conn.reader.next());
  }
  if (packet.kind === 'cancel') {
    host.cancel(packet.pid, packet.secret);
    conn.socket.destroy();
    return undefined;
  }
  const params = packet.params;
  const role = params.get('user');
  if (tls.mode === 'require' && !conn.encrypted)
    return {
      role,
      refusal: {
        sqlstate: SQLSTATE.INVALID_AUTHORIZATION,
        reason: 'tls_required',
        text: 'the router accepts only TLS connections (BRABANT_ROUTER_TLS=require): connect with sslmode=require or verify-full',
      },
    };
  const notServed = host.served(params);
  if (notServed !== undefined) return { role, refusal: notServed };
  let keys: ScramKeys | undefined;
  if (host.access.auth.kind === 'scram') {
    const proven = await authenticate(conn, host, role!);
    if (proven.kind === 'refused')
      return {
        role,
        why: proven.why,
        refusal: {
          sqlstate: SQLSTATE.INVALID_PASSWORD,
          reason: 'auth_failed',
          text: `password authentication failed for user "${role}"`,
        },
      };
    keys = proven.keys;
  }
  const refusal = await host.admit(conn.socket, params, keys, () => conn.handOver());
  return refusal === undefined ? undefined : { role, refusal };
}

/** The SCRAM conversation: what the client proved, or why it is refused. */
async function authenticate(
  conn: LoginConnection,
  host: LoginHost,
  role: string,
): Promise<{ kind: 'proven'; keys: ScramKeys } | { kind: 'refused'; why: string }> {
  const scram = new ScramLogin(
    role,
    await host.lookup(role),
    randomBytes(18).toString('base64'),
    host.mockSecret,
  );
  conn.socket.write(scram.start());
  for (;;) {
    const m = await conn.next(() => conn.reader.nextMessage(MAX_AUTH_MESSAGE));
    // a client that gives up (no password to give) says Terminate
    if (m.type === 'X') throw new ConnectionGone();
    const step = scram.receive(m.type, m.body);
    switch (step.kind) {
      case 'send':
        conn.socket.write(step.bytes);
        continue;
      case 'refused':
        return step;
      case 'proven':
        conn.socket.write(step.bytes);
        return { kind: 'proven', keys: step.keys };
      default:
        return step satisfies never;
    }
  }
}

class ConnectionGone extends Error {}

/** The socket of a login and what it sent, read as the conversation asks for it. */
class LoginConnection {
  readonly reader = new StartupReader();
  encrypted = false;
  handshaking = false;
  private wake: (() => void) | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.reader.push(chunk);
    this.wake?.();
  };
  private readonly onEnd = () => this.wake?.();

  constructor(public socket: Socket) {
    this.listen(socket);
  }

  /** Waits until `read` has something (it throws on bad bytes); throws ConnectionGone if the client leaves. */
  async next<T>(read: () => T | undefined): Promise<T> {
    for (;;) {
      const value = read();
      if (value !== undefined) return value;
      if (this.socket.destroyed || !this.socket.readable) throw new ConnectionGone();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  /** The TLS handshake, after the 'S': from then on the conversation goes through TLS. */
  async startTls(context: SecureContext): Promise<void> {
    this.unlisten(this.socket);
    const tls = new TLSSocket(this.socket, { isServer: true, secureContext: context });
    this.socket = tls;
    this.handshaking = true;
    await new Promise<void>((resolve, reject) => {
      tls.once('secure', () => resolve());
      tls.once('error', reject);
      tls.once('close', () => reject(new ConnectionGone()));
    }).catch((err: unknown) => {
      tls.destroy();
      throw err instanceof ConnectionGone ? err : new ConnectionGone();
    });
    this.handshaking = false;
    this.encrypted = true;
    this.listen(tls);
  }

  /** The relay takes the socket over; the bytes the client sent behind its login go with it. */
  handOver(): Buffer {
    this.unlisten(this.socket);
    return this.reader.rest();
  }

  private listen(s: Socket): void {
    s.on('error', () => {});
    s.on('data', this.onData);
    s.on('end', this.onEnd);
    s.on('close', this.onEnd);
  }

  private unlisten(s: Socket): void {
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('close', this.onEnd);
  }
}

/** Whether a startup message is served: the router's database, a role it serves, no replication. */
export function served(
  params: Map<string, string>,
  s: {
    database: string;
    /** The only role served (trust: the user of the node URLs); undefined: any authenticated role. */
    role: string | undefined;
  },
): Refusal | undefined {
  const database = params.get('database') ?? params.get('user');
  if (database !== s.database)
    return {
      sqlstate: SQLSTATE.INVALID_CATALOG_NAME,
      reason: 'not_served',
      text: `database "${database}" is not served by this router: connect to "${s.database}"`,
    };
  if (params.get('user') === undefined)
    return {
      sqlstate: SQLSTATE.INVALID_AUTHORIZATION,
      reason: 'not_served',
      text: 'no user in the startup message: connect with a user name',
    };
  if (s.role !== undefined && params.get('user') !== s.role)
    return {
      sqlstate: SQLSTATE.INVALID_AUTHORIZATION,
      reason: 'not_served',
      text: `role "${params.get('user')}" is not served by this router: connect as "${s.role}" (or set BRABANT_ROUTER_AUTH=scram to let each application log in as its own role)`,
    };
  if (params.has('replication'))
    return {
      sqlstate: SQLSTATE.PROTOCOL_VIOLATION,
      reason: 'not_served',
      text: 'replication connections are not served by the router: connect to a node',
    };
  return undefined;
}

/**
 * What logs an admitted client in: the parameters the leader announced (with the client's own
 * values where it chose some), the client's backend key (the router's, for cancel requests),
 * and ReadyForQuery.
 */
export function welcome(announced: Map<string, string>, vars: Vars, pid: number, secret: number): Buffer {
  const hello: Buffer[] = [authenticationOk()];
  for (const [k, v] of announced) {
    const own = vars.get(k);
    hello.push(parameterStatus(k, own === undefined || own === DEFAULT ? v : own));
  }
  hello.push(backendKeyData(pid, secret), readyForQuery('I'));
  return Buffer.concat(hello);
}
