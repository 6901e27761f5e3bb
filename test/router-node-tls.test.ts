/**
 * The router on a secured node (as the secured stack's nodes are: TLS, SCRAM for every role,
 * plaintext refused by pg_hba): its connections to the node go over TLS as the node URL's sslmode
 * says (verify-full against the CA), its own role logs in with the password of its password file,
 * and end to end — a client over verify-full TLS with a SCRAM password, the router over TLS to the
 * node as that client's role — nothing crosses the wire in the clear. A plaintext URL is refused
 * by the node by name, a CA that did not sign the node's certificate fails as TLS_FAILED.
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  initNode,
  pgClientConfig,
  type RunningPostgres,
  startNode,
  withDatabase,
} from '../infra/postgres/postgres.ts';
import { freePort } from '../infra/processes.ts';
import { type LaunchedService, launch } from '../services/control/launcher.ts';
import { openServer, targetOf } from '../services/router/server-connection.ts';
import { makeCertificates, type TestCertificates } from './support/certificates.ts';

const dir = mkdtempSync(join(tmpdir(), 'brabant-router-node-tls-'));
chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user
const ADMIN_PASSWORD = 'admin-pw-0123456789';
const ROUTER_PASSWORD = 'router-pw-0123456789';
const APP_PASSWORD = 'app a pw; 0123';
let node: RunningPostgres;
let certs: TestCertificates;
let router: LaunchedService | undefined;
/** The node as the router's role reaches it, over TLS, checked against `ca`; no password in it. */
const routerUrl = (ca: string, mode = 'verify-full') => {
  const u = new URL(withDatabase(node.url, 'app'));
  u.username = 'brabant_router';
  u.search = '';
  u.searchParams.set('sslmode', mode);
  u.searchParams.set('sslrootcert', ca);
  return u.toString();
};

async function sql(query: string): Promise<pg.QueryResult> {
  const c = new pg.Client(pgClientConfig(withDatabase(node.url, 'app'), ADMIN_PASSWORD));
  await c.connect();
  try {
    return await c.query(query);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  certs = makeCertificates(dir);
  writeFileSync(join(dir, 'admin.pw'), `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'router.pw'), `${ROUTER_PASSWORD}\n`, { mode: 0o600 });
  const spec = {
    name: 'tls-1',
    port: await freePort(),
    dataDir: join(dir, 'tls-1'),
    logFile: join(dir, 'tls-1.log'),
    // the node's certificate: CN localhost, SAN localhost and 127.0.0.1, signed by certs.ca
    security: { cert: certs.cert, key: certs.key, ca: certs.ca, adminPasswordFile: join(dir, 'admin.pw') },
  };
  initNode(spec);
  node = await startNode(spec);
  const c = new pg.Client(pgClientConfig(node.url, ADMIN_PASSWORD));
  await c.connect();
  await c.query('create database app');
  await c.end();
  await sql(`create role brabant_router login password '${ROUTER_PASSWORD}'`);
  await sql(`create role app_a login password '${APP_PASSWORD}'`);
  await sql('create table t (id int primary key, by_role text default current_user)');
  await sql('grant select, insert on t to app_a');
  await sql(`create schema brabant_auth`);
  await sql(`create function brabant_auth.lookup(role_name text, out rolname text, out rolpassword text)
    returns setof record language sql security definer set search_path = pg_catalog
    as $$ select rolname::text, rolpassword from pg_authid
          where rolname = role_name and rolcanlogin and not rolsuper $$`);
  await sql('revoke all on function brabant_auth.lookup(text) from public');
  await sql('grant usage on schema brabant_auth to brabant_router');
  await sql('grant execute on function brabant_auth.lookup(text) to brabant_router');
}, 120_000);

afterAll(async () => {
  await router?.kill('SIGKILL');
  await node?.process.stop();
});

describe('router to a secured node', { timeout: 60_000 }, () => {
  it('logs in over TLS (verify-full against the CA) with its role’s password', async () => {
    const login = await openServer(targetOf(routerUrl(certs.ca), ROUTER_PASSWORD), 5000);
    try {
      expect(login.params.get('session_authorization')).toBe('brabant_router');
      expect('encrypted' in login.socket && login.socket.encrypted).toBe(true);
    } finally {
      login.socket.destroy();
    }
  });

  it('a plaintext URL is refused by the node by name; a CA that did not sign it fails as TLS_FAILED', async () => {
    const plain = new URL(routerUrl(certs.ca));
    plain.search = '';
    await expect(openServer(targetOf(plain.toString(), ROUTER_PASSWORD), 5000)).rejects.toMatchObject({
      code: 'SERVER_REFUSED',
      message: expect.stringMatching(/no encryption/),
    });
    await expect(openServer(targetOf(routerUrl(certs.otherCa), ROUTER_PASSWORD), 5000)).rejects.toMatchObject(
      {
        code: 'TLS_FAILED',
        message: expect.stringMatching(/sslmode=verify-full.*sslrootcert names the CA/),
      },
    );
    await expect(openServer(targetOf(routerUrl(certs.ca), 'wrong password'), 5000)).rejects.toMatchObject({
      code: 'SERVER_REFUSED',
      message: expect.stringMatching(/password authentication failed/),
    });
  });

  it('end to end: TLS and SCRAM from the client to the router and from the router to the node, as the client’s role', async () => {
    const port = await freePort();
    router = launch(
      'router',
      'tls',
      {
        region: 'r',
        nodes: [`tls-1@r=${routerUrl(certs.ca)}`],
        database: 'app',
        port,
        controlPort: 0,
        tls: 'require',
        tlsCert: certs.cert,
        tlsKey: certs.key,
        auth: 'scram',
        authQuery: 'select rolname, rolpassword from brabant_auth.lookup($1)',
        nodePasswordFile: join(dir, 'router.pw'),
      },
      { logFile: resolve(`.cache/test-logs/router-tls-${Date.now()}.log`) },
    );
    await router.waitForLog(/control API listening/);
    const client = (password: string, ssl: pg.ClientConfig['ssl']) =>
      new pg.Client({ host: '127.0.0.1', port, user: 'app_a', database: 'app', password, ssl });
    const verified = { ca: readFileSync(certs.ca, 'utf8'), servername: 'localhost' };
    const c = client(APP_PASSWORD, verified);
    await c.connect();
    try {
      await c.query('insert into t (id) values (1)');
      expect((await c.query('select by_role from t')).rows).toEqual([{ by_role: 'app_a' }]);
      // the server connection the client's transaction ran on: app_a's, over TLS
      const conn = await c.query<{ usename: string; ssl: boolean }>(
        'select a.usename, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid) where a.pid = pg_backend_pid()',
      );
      expect(conn.rows).toEqual([{ usename: 'app_a', ssl: true }]);
    } finally {
      await c.end();
    }
    // the router's own connections (health checks, watch, auth query) are TLS too
    const own = await sql(
      "select bool_and(s.ssl) as ssl, count(*)::int as n from pg_stat_activity a join pg_stat_ssl s using (pid) where a.usename = 'brabant_router'",
    );
    expect(own.rows[0]).toMatchObject({ ssl: true });
    expect(own.rows[0].n).toBeGreaterThan(0);
    const plaintext = client(APP_PASSWORD, false);
    await expect(plaintext.connect()).rejects.toThrow(/accepts only TLS/);
    const wrong = client('wrong', verified);
    await expect(wrong.connect()).rejects.toThrow(/password authentication failed/);
    expect(router.running).toBe(true);
  });
});
