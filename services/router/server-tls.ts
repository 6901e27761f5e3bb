/**
 * TLS from the router to a node, as libpq's sslmode says in the node's URL: the plan (which
 * mode, which CA, which name to check) is pure; `openTransport` sends the SSLRequest
 * (https://www.postgresql.org/docs/15/protocol-flow.html#id-1.10.6.7.11), reads the server's one
 * byte answer ('S': the TLS handshake follows, 'N': no TLS) and hands back the socket the startup
 * message goes on.
 *
 *   disable, allow, no sslmode   plaintext (what the router always did)
 *   prefer                       TLS when the server offers it, certificate not checked
 *   require                      TLS or no connection, certificate not checked (libpq: unless
 *                                sslrootcert is given, then as verify-ca)
 *   verify-ca                    TLS, the certificate signed by sslrootcert's CA
 *   verify-full                  TLS, signed by the CA and issued for the URL's host
 */
import { readFileSync } from 'node:fs';
import { isIP, type Socket, connect as tcpConnect } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { BrabantError } from '../runtime/errors.ts';
import { SSL_REQUEST } from './wire.ts';

export type ServerTlsMode = 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface ServerTls {
  mode: ServerTlsMode;
  /** PEM of the CA the server's certificate must be signed by (verify-ca, verify-full). */
  ca?: string;
}

const MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

/** The TLS a node URL asks for (its sslmode and sslrootcert), or undefined for plaintext. */
export function serverTlsOf(url: URL, readFile: (f: string) => string = readCa): ServerTls | undefined {
  const given = (url.searchParams.get('sslmode') ?? 'disable') as (typeof MODES)[number];
  if (!MODES.includes(given))
    throw new BrabantError(
      'CONFIG_INVALID',
      `node URL ${url.host}${url.pathname}: sslmode=${given} is not one of ${MODES.join(', ')}`,
    );
  const root = url.searchParams.get('sslrootcert') ?? undefined;
  if (given === 'disable' || given === 'allow') return undefined;
  // libpq: require with a root certificate checks the chain as verify-ca does
  const mode: ServerTlsMode = given === 'require' && root !== undefined ? 'verify-ca' : given;
  if ((mode === 'verify-ca' || mode === 'verify-full') && root === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `node URL ${url.host}${url.pathname}: sslmode=${mode} needs sslrootcert=FILE (the PEM of the CA that signed the node's certificate)`,
    );
  return { mode, ...(root === undefined || mode === 'prefer' ? {} : { ca: readFile(root) }) };
}

function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BrabantError(
      'CONFIG_INVALID',
      `sslrootcert ${file} of a node URL cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give a PEM file the router may read`,
    );
  }
  if (!pem.includes('-----BEGIN '))
    throw new BrabantError('CONFIG_INVALID', `sslrootcert ${file} of a node URL is not a PEM file`);
  return pem;
}

/** The SSLRequest: length 8, code 80877103. */
export function sslRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(SSL_REQUEST, 4);
  return b;
}

/**
 * A connected socket to the node, TLS set up as `tls` asks; the startup message goes on it.
 * Rejects with SOURCE_UNAVAILABLE (unreachable), SERVER_REFUSED (no TLS where it is required) or
 * TLS_FAILED (the certificate not trusted or not for the host).
 */
export function openTransport(
  target: { host: string; port: number; tls?: ServerTls },
  where: string,
  timeoutMs: number,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const tcp = tcpConnect({ host: target.host, port: target.port, noDelay: true, keepAlive: true });
    let settled = false;
    const fail = (err: BrabantError, s: Socket = tcp) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      tcp.destroy();
      reject(err);
    };
    const done = (s: Socket) => {
      settled = true;
      clearTimeout(timer);
      tcp.off('error', unreachable);
      resolve(s);
    };
    const timer = setTimeout(
      () =>
        fail(new BrabantError('SOURCE_UNAVAILABLE', `connecting to ${where} took more than ${timeoutMs} ms`)),
      timeoutMs,
    );
    const unreachable = (err: Error) =>
      fail(new BrabantError('SOURCE_UNAVAILABLE', `cannot reach ${where}: ${err.message}`, { cause: err }));
    tcp.on('error', unreachable);
    const tls = target.tls;
    if (tls === undefined) {
      tcp.once('connect', () => {
        if (!settled) done(tcp);
      });
      return;
    }
    tcp.once('connect', () => tcp.write(sslRequest()));
    tcp.once('close', () =>
      fail(new BrabantError('SOURCE_UNAVAILABLE', `${where} closed the connection before answering TLS`)),
    );
    tcp.once('data', (chunk: Buffer) => {
      if (settled) return;
      tcp.removeAllListeners('close');
      const answer = String.fromCharCode(chunk[0]!);
      if (answer === 'N') {
        if (tls.mode === 'prefer') {
          done(tcp);
          return;
        }
        fail(
          new BrabantError(
            'SERVER_REFUSED',
            `${where} does not offer TLS, and the node URL asks for sslmode=${tls.mode}: turn ssl on on the node, or change the URL's sslmode`,
          ),
        );
        return;
      }
      if (answer !== 'S' || chunk.length > 1) {
        // bytes after 'S' would be taken for the handshake's: refused, as libpq does (CVE-2021-23222)
        fail(
          new BrabantError(
            'PROTOCOL_ERROR',
            `${where} answered the SSL request with ${chunk.length} byte(s) starting '${answer}' instead of 'S' or 'N'`,
          ),
        );
        return;
      }
      const verify = tls.mode === 'verify-ca' || tls.mode === 'verify-full';
      const secure = tlsConnect({
        socket: tcp,
        host: target.host,
        ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
        ...(tls.ca === undefined ? {} : { ca: [tls.ca] }),
        rejectUnauthorized: verify,
        // verify-ca: the chain only, not the name
        ...(tls.mode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
        minVersion: 'TLSv1.2',
      });
      const tlsError = (err: Error) =>
        fail(
          new BrabantError(
            'TLS_FAILED',
            `TLS to ${where} failed (sslmode=${tls.mode}): ${err.message}; check that sslrootcert names the CA that signed the node's certificate${tls.mode === 'verify-full' ? ' and that the certificate is for the URL host' : ''}`,
            { cause: err },
          ),
          secure,
        );
      secure.once('error', tlsError);
      secure.once('secureConnect', () => {
        if (settled) return;
        secure.off('error', tlsError);
        done(secure);
      });
    });
  });
}

/**
 * The same TLS as node-postgres options (the router's auth query connection). node-postgres has
 * no fallback to plaintext: with `prefer` that connection requires TLS, unchecked.
 */
export function pgSslOf(tls: ServerTls | undefined, host: string): ConnectionOptions | false {
  if (tls === undefined) return false;
  if (tls.mode === 'prefer' || tls.mode === 'require') return { rejectUnauthorized: false };
  return {
    rejectUnauthorized: true,
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(isIP(host) === 0 ? { servername: host } : {}),
    ...(tls.mode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
  };
}
