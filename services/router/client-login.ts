/**
 * A client connection's startup phase, before its first query: TLS and GSS encryption requests
 * (answered "no"), cancel requests, the startup message and whether the router serves it, and
 * the answer that logs the client in. The router does not authenticate clients: it listens on
 * 127.0.0.1 only, for applications on the same host (docs/router.md).
 */
import type { Socket } from 'node:net';
import { describeError } from '../runtime/errors.ts';
import { SQLSTATE, type Sqlstate } from '../runtime/sqlstate.ts';
import { clientVars, DEFAULT, type Vars } from './session-params.ts';
import {
  authenticationOk,
  backendKeyData,
  errorResponse,
  parameterStatus,
  readyForQuery,
  StartupReader,
} from './wire.ts';

/** How long a client has to send its startup message. */
const LOGIN_TIMEOUT_MS = 10_000;

/**
 * Reads the startup phase of a new client connection: `cancel` gets a cancel request's backend
 * key (the connection then closes), `startup` the startup message's parameters and the bytes the
 * client sent right behind it. Bad bytes end the connection with a FATAL that says why.
 */
export function readStartup(
  socket: Socket,
  on: {
    cancel: (pid: number, secret: number) => void;
    startup: (params: Map<string, string>, rest: Buffer) => void;
  },
): void {
  const reader = new StartupReader();
  socket.on('error', () => {});
  // a connection that never completes its startup does not stay open
  const login = setTimeout(() => socket.destroy(), LOGIN_TIMEOUT_MS);
  socket.once('close', () => clearTimeout(login));
  const onStartup = (chunk: Buffer) => {
    try {
      reader.push(chunk);
      for (;;) {
        const p = reader.next();
        if (p === undefined) return;
        switch (p.kind) {
          case 'ssl':
          case 'gssenc':
            socket.write('N');
            continue;
          case 'cancel':
            on.cancel(p.pid, p.secret);
            socket.destroy();
            return;
          case 'startup': {
            clearTimeout(login);
            socket.off('data', onStartup);
            on.startup(p.params, reader.rest());
            return;
          }
          default:
            return p satisfies never;
        }
      }
    } catch (err) {
      socket.end(errorResponse('FATAL', SQLSTATE.PROTOCOL_VIOLATION, describeError(err)));
    }
  };
  socket.on('data', onStartup);
}

export interface Served {
  /** The database name clients use. */
  database: string;
  /** The user of the node URLs: clients connect as that user. */
  user: string;
  /** The settings a client has unless its startup message says otherwise. */
  defaults: Vars;
}

/** Whether a startup message is served, and the client's settings if it is. */
export function admission(
  params: Map<string, string>,
  served: Served,
): { vars: Vars } | { sqlstate: Sqlstate; text: string } {
  const database = params.get('database') ?? params.get('user');
  if (database !== served.database)
    return {
      sqlstate: SQLSTATE.INVALID_CATALOG_NAME,
      text: `database "${database}" is not served by this router: connect to "${served.database}"`,
    };
  if (params.get('user') !== served.user)
    return {
      sqlstate: SQLSTATE.INVALID_AUTHORIZATION,
      text: `role "${params.get('user')}" is not served by this router: connect as "${served.user}"`,
    };
  if (params.has('replication'))
    return {
      sqlstate: SQLSTATE.PROTOCOL_VIOLATION,
      text: 'replication connections are not served by the router: connect to a node',
    };
  try {
    return { vars: clientVars(params, served.defaults) };
  } catch (err) {
    return { sqlstate: SQLSTATE.PROTOCOL_VIOLATION, text: (err as Error).message };
  }
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
