/**
 * One connection from the router to a PostgreSQL node (I/O): TCP, startup message,
 * authentication (trust, password, md5, SCRAM-SHA-256), and the parameters and backend key the
 * server announces, up to its first ReadyForQuery. What happens after login is the proxy's.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { BrabantError } from '../runtime/errors.ts';
import { SQLSTATE } from '../runtime/sqlstate.ts';
import { clientFinal, clientFirst, type ScramKeys, verifyServerFinal } from './scram.ts';
import { openTransport, type ServerTls, serverTlsOf } from './server-tls.ts';
import {
  MessageScanner,
  parseAuthRequest,
  parseErrorFields,
  parseParameterStatus,
  passwordMessage,
  saslInitialResponse,
  saslResponse,
  startupMessage,
} from './wire.ts';

export interface Target {
  host: string;
  port: number;
  dbname: string;
  user: string;
  password?: string;
  /**
   * For a role whose password the router does not have: the SCRAM keys a client of that role
   * proved it knows when it logged in to the router (SCRAM pass-through).
   */
  scram?: ScramKeys;
  /** TLS to the node, from the URL's sslmode and sslrootcert (server-tls.ts); absent: plaintext. */
  tls?: ServerTls;
}

/** A node URL as the router connects to it; `password`: the router role's, when the URL has none. */
export function targetOf(url: string, password?: string): Target {
  const u = new URL(url);
  const given = decodeURIComponent(u.password) || password;
  const tls = serverTlsOf(u);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    dbname: decodeURIComponent(u.pathname.slice(1)) || 'postgres',
    user: decodeURIComponent(u.username) || 'postgres',
    ...(given ? { password: given } : {}),
    ...(tls === undefined ? {} : { tls }),
  };
}

export const describeTarget = (t: Target): string => `${t.user}@${t.host}:${t.port}/${t.dbname}`;

export interface ServerLogin {
  socket: Socket;
  /** Parameters the server reported at login (ParameterStatus). */
  params: Map<string, string>;
  pid: number;
  secret: number;
}

/** SQLSTATEs at login that mean "not available now" rather than "refused". */
const UNAVAILABLE_STATES = new Set<string>([
  SQLSTATE.CANNOT_CONNECT_NOW,
  SQLSTATE.ADMIN_SHUTDOWN,
  SQLSTATE.CRASH_SHUTDOWN,
  SQLSTATE.TOO_MANY_CONNECTIONS,
]);

/**
 * Opens and authenticates a server connection (over TLS when the node URL asks for it); rejects
 * with SOURCE_UNAVAILABLE (unreachable, starting, shutting down, full), SERVER_REFUSED or
 * TLS_FAILED.
 */
export async function openServer(target: Target, timeoutMs: number): Promise<ServerLogin> {
  const where = describeTarget(target);
  const startedAt = Date.now();
  const socket = await openTransport(target, where, timeoutMs);
  return login(socket, target, where, Math.max(1, timeoutMs - (Date.now() - startedAt)), timeoutMs);
}

/** The startup message and authentication, on a connected socket, up to the first ReadyForQuery. */
function login(
  socket: Socket,
  target: Target,
  where: string,
  remainingMs: number,
  timeoutMs: number,
): Promise<ServerLogin> {
  return new Promise((resolve, reject) => {
    const params = new Map<string, string>();
    let pid = 0;
    let secret = 0;
    let scram: { state: ReturnType<typeof clientFirst>['state']; expected?: string } | undefined;
    let done = false;
    const fail = (err: BrabantError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () =>
        fail(new BrabantError('SOURCE_UNAVAILABLE', `connecting to ${where} took more than ${timeoutMs} ms`)),
      remainingMs,
    );
    const needPassword = (): string => {
      if (target.password === undefined)
        throw new BrabantError(
          'SERVER_REFUSED',
          target.scram !== undefined
            ? `${where} asks for a password in clear or md5, and the router has only the SCRAM keys its client proved: use scram-sha-256 for this role in the node's pg_hba.conf`
            : `${where} asks for a password and the router has none for it: give BRABANT_ROUTER_NODE_PASSWORD_FILE (or the password in the URL in BRABANT_ROUTER_NODES)`,
        );
      return target.password;
    };
    const scramSecret = () =>
      target.password === undefined && target.scram !== undefined
        ? { keys: target.scram }
        : { password: needPassword() };
    const scanner = new MessageScanner(new Set(['R', 'S', 'K', 'E', 'Z']));
    const onData = (chunk: Buffer) => {
      try {
        scanner.scan(chunk, (m) => {
          if (done) return;
          const body = m.body!;
          switch (m.type) {
            case 'R': {
              const auth = parseAuthRequest(body);
              switch (auth.kind) {
                case 'ok':
                  return;
                case 'cleartext':
                  socket.write(passwordMessage(needPassword()));
                  return;
                case 'md5': {
                  const inner = createHash('md5')
                    .update(needPassword() + target.user)
                    .digest('hex');
                  const outer = createHash('md5')
                    .update(Buffer.concat([Buffer.from(inner), auth.salt]))
                    .digest('hex');
                  socket.write(passwordMessage(`md5${outer}`));
                  return;
                }
                case 'sasl': {
                  if (!auth.mechanisms.includes('SCRAM-SHA-256'))
                    throw new BrabantError(
                      'SERVER_REFUSED',
                      `${where} offers SASL mechanisms ${auth.mechanisms.join(', ')}; the router speaks SCRAM-SHA-256`,
                    );
                  scramSecret();
                  const first = clientFirst(randomBytes(18).toString('base64'));
                  scram = { state: first.state };
                  socket.write(saslInitialResponse('SCRAM-SHA-256', Buffer.from(first.message)));
                  return;
                }
                case 'sasl-continue': {
                  if (scram === undefined)
                    throw new BrabantError('PROTOCOL_ERROR', `${where}: SASL continue before start`);
                  const final = clientFinal(scram.state, auth.data.toString('utf8'), scramSecret());
                  scram.expected = final.expectedServerSignature;
                  socket.write(saslResponse(Buffer.from(final.message)));
                  return;
                }
                case 'sasl-final':
                  verifyServerFinal(auth.data.toString('utf8'), scram?.expected ?? '');
                  return;
                case 'unsupported':
                  throw new BrabantError(
                    'SERVER_REFUSED',
                    `${where} asks for authentication method ${auth.code}, which the router does not speak (trust, password, md5, scram-sha-256)`,
                  );
                default:
                  return auth satisfies never;
              }
            }
            case 'S': {
              const p = parseParameterStatus(body);
              params.set(p.name, p.value);
              return;
            }
            case 'K':
              pid = body.readInt32BE(0);
              secret = body.readInt32BE(4);
              return;
            case 'E': {
              const f = parseErrorFields(body);
              const state = f.get('C') ?? '';
              throw new BrabantError(
                UNAVAILABLE_STATES.has(state) ? 'SOURCE_UNAVAILABLE' : 'SERVER_REFUSED',
                `${where} refused the router's connection: ${f.get('M')} (SQLSTATE ${state})`,
              );
            }
            case 'Z':
              done = true;
              clearTimeout(timer);
              socket.off('data', onData);
              socket.off('error', onError);
              socket.off('close', onClose);
              resolve({ socket, params, pid, secret });
              return;
          }
        });
      } catch (err) {
        fail(
          err instanceof BrabantError
            ? err
            : new BrabantError('PROTOCOL_ERROR', `${where}: ${(err as Error).message}`, { cause: err }),
        );
      }
    };
    const onError = (err: Error) =>
      fail(new BrabantError('SOURCE_UNAVAILABLE', `cannot reach ${where}: ${err.message}`, { cause: err }));
    const onClose = () =>
      fail(new BrabantError('SOURCE_UNAVAILABLE', `${where} closed the connection during login`));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.write(startupMessage({ user: target.user, database: target.dbname, client_encoding: 'UTF8' }));
  });
}
