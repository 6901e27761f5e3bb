/**
 * The router's proxy secured: TLS for clients (a CA and certificate made with openssl here),
 * SCRAM-SHA-256 against the node's own roles (an auth query through a SECURITY DEFINER function,
 * as docs/router.md recommends, and a user list file), each client's transactions run as its own
 * role (the router logs in to the node with the keys the client proved: the node here asks every
 * role but the test's superuser for scram-sha-256), and the limits on clients. Real clients: the
 * `pg` driver and Debian's psql 15. The node is this test's own PostgreSQL server, since it
 * changes its pg_hba.conf.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initNode, type RunningPostgres, startNode, withDatabase } from '../infra/postgres/postgres.ts';
import { freePort } from '../infra/processes.ts';
import { targetOf } from '../services/router/server-connection.ts';
import { startupMessage } from '../services/router/wire.ts';
import { makeCertificates, type TestCertificates } from './support/certificates.ts';
import { type AccessOptions, type StartedProxy, startProxy } from './support/proxy.ts';
import { RawClient } from './support/raw-client.ts';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'brabant-router-sec-'));
chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user
let node: RunningPostgres;
/** The node as the test's superuser reaches it (trust). */
let admin: string;
/** The router's own role, as BRABANT_ROUTER_NODES would name it. */
let routerUrl: string;
const started: StartedProxy[] = [];
const open: pg.Client[] = [];

const ROUTER_PASSWORD = 'router-pw';
const PASSWORDS = { app_a: 'secret a', app_b: 'secret b', app_c: 'secret c' } as const;
/** As docs/router.md has it: the verifier lookup without a superuser. */
const AUTH_QUERY = 'select rolname, rolpassword from brabant_auth.lookup($1)';

async function sql(query: string, params: unknown[] = [], url = admin): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(query, params);
  } finally {
    await c.end();
  }
}

async function proxyWith(access: AccessOptions, poolSize = 2): Promise<StartedProxy> {
  const p = await startProxy(targetOf(routerUrl), { poolSize, access });
  started.push(p);
  return p;
}

async function client(
  port: number,
  role: string,
  password: string | undefined,
  extra: Partial<pg.ClientConfig> = {},
) {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: role,
    database: 'app',
    ...(password === undefined ? {} : { password }),
    ...extra,
  });
  c.on('error', () => {});
  await c.connect();
  open.push(c);
  return c;
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('connected, expected a refusal');
    },
    (err: { code?: string; message: string }) => err,
  );

/** psql 15 through the router: exit code and output. */
async function psql(conninfo: string, password: string | undefined, command = 'select current_user') {
  try {
    const r = await run('psql', ['-X', '-w', '-At', '-d', conninfo, '-c', command], {
      env: { PATH: process.env.PATH, ...(password === undefined ? {} : { PGPASSWORD: password }) },
    });
    return { code: 0, out: r.stdout.trim(), err: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout.trim(), err: err.stderr };
  }
}

/** The roles of the proxy's server connections on the node (not the auth query's, nor the test's superuser). */
async function backends(): Promise<string[]> {
  const r = await sql(
    `select usename from pg_stat_activity where datname = 'app' and usename <> 'postgres'
       and application_name <> 'brabant-router-auth' order by usename`,
  );
  return r.rows.map((x) => x.usename as string);
}

let certs: TestCertificates;

beforeAll(async () => {
  const spec = {
    name: 'sec-1',
    port: await freePort(),
    dataDir: join(dir, 'sec-1'),
    logFile: join(dir, 'sec-1.log'),
  };
  initNode(spec);
  node = await startNode(spec);
  await sql('create database app', [], node.url);
  admin = withDatabase(node.url, 'app');
  await sql(`create role brabant_router login password '${ROUTER_PASSWORD}'`);
  for (const [role, password] of Object.entries(PASSWORDS))
    await sql(`create role ${role} login password '${password.replaceAll("'", "''")}'`);
  await sql('create table t (id int primary key, by_role text default current_user)');
  await sql('grant select, insert on t to app_a, app_b, app_c');
  await sql('create table secret (x int)'); // no grant: only the owner reads it
  // the lookup function of docs/router.md: the router's role reads verifiers, not pg_authid
  await sql(`create schema brabant_auth`);
  await sql(`create function brabant_auth.lookup(role_name text, out rolname text, out rolpassword text)
    returns setof record language sql security definer set search_path = pg_catalog
    as $$ select rolname::text, rolpassword from pg_authid
          where rolname = role_name and rolcanlogin and not rolsuper
            and (rolvaliduntil is null or rolvaliduntil > now()) $$`);
  await sql('revoke all on function brabant_auth.lookup(text) from public');
  await sql('grant usage on schema brabant_auth to brabant_router');
  await sql('grant execute on function brabant_auth.lookup(text) to brabant_router');
  // every role but the test's superuser logs in with SCRAM, the router's own included
  writeFileSync(
    join(spec.dataDir, 'pg_hba.conf'),
    'host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n',
  );
  await sql('select pg_reload_conf()');
  const u = new URL(admin);
  u.username = 'brabant_router';
  u.password = ROUTER_PASSWORD;
  routerUrl = u.toString();
  certs = makeCertificates(dir);
}, 120_000);

afterAll(async () => {
  for (const c of open) await c.end().catch(() => {});
  for (const p of started) await p.stop();
  await node?.process.stop();
});

describe('router proxy: SCRAM-SHA-256 against the node’s roles', { timeout: 60_000 }, () => {
  let p: StartedProxy;
  beforeAll(async () => {
    p = await proxyWith({ auth: 'scram', authQuery: AUTH_QUERY });
  });

  it('refuses wrong, missing and unknown passwords before any server connection is used for the client', async () => {
    const before = await backends();
    expect(before).toEqual(['brabant_router']); // the pool's first connection, from the start
    const wrong = await failure(client(p.port, 'app_c', 'not the password'));
    expect(wrong).toMatchObject({
      code: '28P01',
      message: 'password authentication failed for user "app_c"',
    });
    // unknown roles and roles that cannot log in look the same to the client
    const unknown = await failure(client(p.port, 'nobody', 'x'));
    expect(unknown).toMatchObject({
      code: '28P01',
      message: 'password authentication failed for user "nobody"',
    });
    const superuser = await failure(client(p.port, 'postgres', 'x'));
    expect(superuser.code).toBe('28P01');
    // psql that has no password to give, and one with the wrong one
    const none = await psql(`host=127.0.0.1 port=${p.port} dbname=app user=app_c sslmode=disable`, undefined);
    expect(none).toMatchObject({ code: 2, err: expect.stringMatching(/no password supplied/) });
    const bad = await psql(`host=127.0.0.1 port=${p.port} dbname=app user=app_c sslmode=disable`, 'nope');
    expect(bad).toMatchObject({
      code: 2,
      err: expect.stringMatching(/password authentication failed for user "app_c"/),
    });
    expect(await backends()).toEqual(before);
    expect(p.proxy.stats()).toMatchObject({ servers: 1, roles: ['brabant_router'] });
    // (psql without a password gives up by itself: not a refusal)
    expect(p.metrics.render()).toMatch(/brabant_router_logins_refused_total\{reason="auth_failed"\} 4/);
  });

  it('runs each client’s transactions as its own role, logged in to the node with the keys it proved', async () => {
    const a = await client(p.port, 'app_a', PASSWORDS.app_a);
    const b = await client(p.port, 'app_b', PASSWORDS.app_b);
    expect((await a.query('select current_user as u, session_user as s')).rows).toEqual([
      { u: 'app_a', s: 'app_a' },
    ]);
    await a.query('insert into t (id) values (1)');
    await b.query('insert into t (id) values (2)');
    expect((await sql('select id, by_role from t order by id')).rows).toEqual([
      { id: 1, by_role: 'app_a' },
      { id: 2, by_role: 'app_b' },
    ]);
    // the node's privileges apply: neither role may read what it was not granted
    await expect(b.query('select * from secret')).rejects.toThrow(/permission denied for table secret/);
    // psql, with the right password
    const ok = await psql(
      `host=127.0.0.1 port=${p.port} dbname=app user=app_b sslmode=disable`,
      PASSWORDS.app_b,
    );
    expect(ok).toMatchObject({ code: 0, out: 'app_b' });
    expect((await backends()).sort()).toEqual(['app_a', 'app_b', 'brabant_router']);
  });

  it('an auth query the router’s role may not run: the client is refused with 08006, the log says why', async () => {
    const q = await proxyWith({
      auth: 'scram',
      authQuery: 'select rolname, rolpassword from pg_authid where rolname = $1',
    });
    const err = await failure(client(q.port, 'app_a', PASSWORDS.app_a));
    expect(err).toMatchObject({
      code: '08006',
      message: expect.stringMatching(/cannot check passwords now/),
    });
  });

  it('a user list file of verifiers as pg_authid holds them', async () => {
    const rows = (await sql(`select rolname, rolpassword from pg_authid where rolname in ('app_a', 'app_b')`))
      .rows;
    const file = join(dir, 'userlist.txt');
    writeFileSync(
      file,
      `# role verifier\n${rows.map((r) => `"${r.rolname}" "${r.rolpassword}"`).join('\n')}\n`,
    );
    const f = await proxyWith({ auth: 'scram', authFile: file });
    const a = await client(f.port, 'app_a', PASSWORDS.app_a);
    expect((await a.query('select current_user as u')).rows).toEqual([{ u: 'app_a' }]);
    await expect(failure(client(f.port, 'app_b', 'wrong'))).resolves.toMatchObject({ code: '28P01' });
    // app_c has a password on the node, but is not listed
    await expect(failure(client(f.port, 'app_c', PASSWORDS.app_c))).resolves.toMatchObject({ code: '28P01' });
    expect(readFileSync(file, 'utf8')).toMatch(/^# role verifier/);
  });
});

describe('router proxy: TLS for clients', { timeout: 60_000 }, () => {
  let p: StartedProxy;
  const conninfo = (port: number, more: string) =>
    `host=localhost hostaddr=127.0.0.1 port=${port} dbname=app user=app_a ${more}`;
  beforeAll(async () => {
    p = await proxyWith({
      tls: 'require',
      tlsCert: certs.cert,
      tlsKey: certs.key,
      auth: 'scram',
      authQuery: AUTH_QUERY,
    });
  });

  it('psql with sslmode=require and verify-full (the test’s CA): right password in, wrong refused', async () => {
    expect(await psql(conninfo(p.port, 'sslmode=require'), PASSWORDS.app_a)).toMatchObject({
      code: 0,
      out: 'app_a',
    });
    const verified = await psql(
      conninfo(p.port, `sslmode=verify-full sslrootcert=${certs.ca}`),
      PASSWORDS.app_a,
      `select 'tls ok'`,
    );
    expect(verified).toMatchObject({ code: 0, out: 'tls ok' });
    const wrongCa = await psql(
      conninfo(p.port, `sslmode=verify-full sslrootcert=${certs.otherCa}`),
      PASSWORDS.app_a,
    );
    expect(wrongCa).toMatchObject({ code: 2, err: expect.stringMatching(/certificate verify failed/) });
    const wrongPassword = await psql(conninfo(p.port, 'sslmode=require'), 'nope');
    expect(wrongPassword).toMatchObject({
      code: 2,
      err: expect.stringMatching(/password authentication failed for user "app_a"/),
    });
  });

  it('refuses plaintext clients with a FATAL that names the option', async () => {
    const plain = await psql(conninfo(p.port, 'sslmode=disable'), PASSWORDS.app_a);
    expect(plain).toMatchObject({ code: 2, err: expect.stringMatching(/BRABANT_ROUTER_TLS=require/) });
    const err = await failure(client(p.port, 'app_a', PASSWORDS.app_a));
    expect(err).toMatchObject({ code: '28000', message: expect.stringMatching(/only TLS connections/) });
  });

  it('the pg driver over TLS, verifying the certificate: right and wrong passwords', async () => {
    const tls = { ssl: { ca: readFileSync(certs.ca, 'utf8'), servername: 'localhost' } };
    const a = await client(p.port, 'app_a', PASSWORDS.app_a, tls);
    expect((await a.query('select current_user as u')).rows).toEqual([{ u: 'app_a' }]);
    const socket = (a as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream;
    expect(socket.encrypted).toBe(true);
    await expect(failure(client(p.port, 'app_a', 'wrong', tls))).resolves.toMatchObject({ code: '28P01' });
  });

  it('TLS offered but not required: plaintext and TLS clients alike, with trust', async () => {
    const allow = await proxyWith({ tls: 'allow', tlsCert: certs.cert, tlsKey: certs.key });
    const plain = await psql(
      `host=127.0.0.1 port=${allow.port} dbname=app user=brabant_router sslmode=disable`,
      undefined,
    );
    expect(plain).toMatchObject({ code: 0, out: 'brabant_router' });
    const verified = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${allow.port} dbname=app user=brabant_router sslmode=verify-full sslrootcert=${certs.ca}`,
      undefined,
    );
    expect(verified).toMatchObject({ code: 0, out: 'brabant_router' });
  });

  it('bytes sent behind an SSL request, before the handshake, are refused (they would pass for encrypted ones)', async () => {
    const raw = await RawClient.open(p.port);
    raw.write(
      Buffer.concat([
        Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]),
        startupMessage({ user: 'app_a', database: 'app' }),
      ]),
    );
    expect((await raw.error()).get('C')).toBe('08P01');
    await raw.closed;
  });
});

describe('router proxy: limits on clients', { timeout: 60_000 }, () => {
  it('at most BRABANT_ROUTER_MAX_CLIENTS connections, logging in or logged in; the next one is refused at once', async () => {
    const p = await proxyWith({ maxClients: 3 });
    const a = await client(p.port, 'brabant_router', undefined);
    // two connections that never log in take their places too
    const idle = await Promise.all([RawClient.open(p.port), RawClient.open(p.port)]);
    const err = await failure(client(p.port, 'brabant_router', undefined));
    expect(err).toMatchObject({
      code: '53300',
      message: expect.stringMatching(/BRABANT_ROUTER_MAX_CLIENTS/),
    });
    for (const c of idle) c.destroy();
    await Promise.all(idle.map((c) => c.closed));
    // their places are free again
    await waitUntil(async () => p.proxy.stats().loggingIn === 0);
    const b = await client(p.port, 'brabant_router', undefined);
    expect((await b.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    expect((await a.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
  });

  it('at most BRABANT_ROUTER_MAX_CLIENTS_PER_USER of one role: its next client is refused, other roles still get in', async () => {
    const p = await proxyWith({ auth: 'scram', authQuery: AUTH_QUERY, maxClientsPerUser: 2 });
    await client(p.port, 'app_a', PASSWORDS.app_a);
    const second = await client(p.port, 'app_a', PASSWORDS.app_a);
    const err = await failure(client(p.port, 'app_a', PASSWORDS.app_a));
    expect(err).toMatchObject({
      code: '53300',
      message: expect.stringMatching(
        /too many connections for role "app_a".*BRABANT_ROUTER_MAX_CLIENTS_PER_USER/,
      ),
    });
    // a wrong password does not take one of app_b's places
    for (let i = 0; i < 3; i++) await failure(client(p.port, 'app_b', 'wrong'));
    const b = await client(p.port, 'app_b', PASSWORDS.app_b);
    expect((await b.query('select current_user as u')).rows).toEqual([{ u: 'app_b' }]);
    await second.end();
    await waitUntil(async () => {
      const c = await client(p.port, 'app_a', PASSWORDS.app_a).catch(() => undefined);
      return c !== undefined;
    });
  });

  it('a login not done within BRABANT_ROUTER_STARTUP_TIMEOUT_MS ends, whatever step it is stuck at', async () => {
    const p = await proxyWith({
      tls: 'allow',
      tlsCert: certs.cert,
      tlsKey: certs.key,
      auth: 'scram',
      authQuery: AUTH_QUERY,
      startupTimeoutMs: 300,
    });
    const silent = await RawClient.open(p.port);
    const halfStartup = await RawClient.open(p.port);
    halfStartup.write(startupMessage({ user: 'app_a', database: 'app' }).subarray(0, 10));
    const midScram = await RawClient.open(p.port);
    midScram.write(startupMessage({ user: 'app_a', database: 'app' }));
    await midScram.until('R'); // AuthenticationSASL, then nothing from the client
    const midTls = await RawClient.open(p.port);
    expect(await midTls.sslRequest()).toBe('S'); // and no handshake
    const t0 = Date.now();
    for (const c of [silent, halfStartup, midScram]) {
      const fields = await c.error(3000);
      expect(fields.get('C')).toBe('57014');
      expect(fields.get('M')).toMatch(/BRABANT_ROUTER_STARTUP_TIMEOUT_MS/);
    }
    await Promise.all([silent.closed, halfStartup.closed, midScram.closed, midTls.closed]);
    expect(Date.now() - t0).toBeLessThan(3000);
    // meanwhile and after, others log in
    const a = await client(p.port, 'app_a', PASSWORDS.app_a);
    expect((await a.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });
});

async function waitUntil(cond: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
