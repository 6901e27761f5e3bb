/**
 * The routers of the secured stack, started from its topology as `brabant start` runs them: they
 * log in to the nodes as the role node init made for them (not a superuser) over verify-full TLS,
 * require TLS and a SCRAM password of every client (checked by the auth query on the node's own
 * roles), and run a client's transactions as its own role, over TLS to the node. Plaintext, a wrong
 * password and the superuser are refused by the proxy before any server connection is used.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LaunchedService, launch } from '../services/control/launcher.ts';
import { readTopology, type Topology } from '../services/runtime/topology.ts';
import { routerSecretFile } from '../services/runtime/topology-security.ts';
import { type SecuredStack, securedStack, stackSecretValues } from './support/secured.ts';

let stack: SecuredStack;
let router: LaunchedService | undefined;
let topology: Topology;
let verified: pg.ClientConfig['ssl'];
const services: LaunchedService[] = [];

/** A client of the vlaanderen router (its port and database from the topology). */
function client(user: string, password: string, ssl: pg.ClientConfig['ssl']): pg.Client {
  const entry = topology.routers.find((r) => r.region === 'vlaanderen')!;
  const c = new pg.Client({
    host: '127.0.0.1',
    port: entry.port,
    database: entry.database,
    user,
    password,
    ssl,
  });
  c.on('error', () => {});
  return c;
}
const APP_PASSWORD = 'orders; pw 0123456789';

beforeAll(async () => {
  stack = await securedStack('router');
}, 180_000);
afterAll(async () => {
  for (const p of services) await p.kill('SIGKILL');
  await router?.kill('SIGKILL');
  await stack?.stop();
});

/** The superuser's connection to a node of the stack (its URL verifies the certificate). */
async function onNode<T>(id: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const n = stack.regions.flatMap((r) => r.nodes).find((x) => x.id === id)!;
  const c = new pg.Client({ connectionString: n.url });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

describe('the secured stack’s router', { timeout: 120_000 }, () => {
  it('TLS and SCRAM from clients, its own non-superuser role over TLS to the nodes, clients’ transactions as their roles', async () => {
    // the application's role on both nodes with the same SCRAM verifier (roles are not
    // replicated; the router's SCRAM pass-through needs the same one wherever it points)
    const verifier = await onNode('vl-1', async (c) => {
      await c.query(`create role orders login password '${APP_PASSWORD.replaceAll("'", "''")}'`);
      return (await c.query("select rolpassword from pg_authid where rolname = 'orders'")).rows[0]
        .rolpassword;
    });
    await onNode('wa-1', (c) => c.query(`create role orders login password '${verifier}'`));
    for (const id of ['vl-1', 'wa-1'])
      await onNode(id, async (c) => {
        // made on each node by the superuser, not replicated (a superuser's DDL is replayed by
        // no peer's apply: docs/security.md, --ddl-roles)
        await c.query('set brabant.ddl_replication = off');
        await c.query(
          'create table if not exists routed (id int primary key, by_role text default current_user)',
        );
        await c.query('grant select, insert on routed to orders');
      });
    topology = readTopology(stack.topologyFile!);
    router = launch(
      'router',
      'vlaanderen',
      {},
      {
        logFile: resolve(`.cache/test-logs/router-secured-${Date.now()}.log`),
        args: ['--topology', stack.topologyFile!, '--region', 'vlaanderen'],
        // not the superuser's password this process holds (PGPASSWORD): the router has its own
        env: { PGPASSWORD: '' },
      },
    );
    await router.waitForLog(/control API listening/);
    const ca = readFileSync(stack.security.ca, 'utf8');
    verified = { ca, servername: 'localhost' };

    const c = client('orders', APP_PASSWORD, verified);
    await c.connect();
    try {
      await c.query('insert into routed (id) values (1)');
      const conn = await c.query<{ usename: string; ssl: boolean; db_user: string }>(
        `select a.usename, s.ssl, (select by_role from routed where id = 1) as db_user
           from pg_stat_activity a join pg_stat_ssl s using (pid) where a.pid = pg_backend_pid()`,
      );
      expect(conn.rows).toEqual([{ usename: 'orders', ssl: true, db_user: 'orders' }]);
    } finally {
      await c.end();
    }

    await expect(client('orders', APP_PASSWORD, false).connect()).rejects.toThrow(/accepts only TLS/);
    await expect(client('orders', 'wrong', verified).connect()).rejects.toThrow(
      /password authentication failed/,
    );
    // the superuser's verifier is not given to the router (brabant_auth.lookup leaves superusers out)
    const admin = readFileSync(stack.security.adminPasswordFile, 'utf8').trim();
    await expect(client('postgres', admin, verified).connect()).rejects.toThrow(
      /password authentication failed/,
    );

    // the router's own sessions on both nodes: its role, not a superuser, over TLS
    for (const id of ['vl-1', 'wa-1'])
      await onNode(id, async (db) => {
        const own = await db.query<{ usename: string; ssl: boolean; super: boolean }>(
          `select distinct a.usename, s.ssl, r.rolsuper as super from pg_stat_activity a join pg_stat_ssl s using (pid)
             join pg_roles r on r.rolname = a.usename where a.application_name like 'brabant-router%'`,
        );
        expect(own.rows).toEqual([{ usename: 'brabant_router', ssl: true, super: false }]);
      });
    expect(router.running).toBe(true);
    // its log holds neither its own password nor a client's
    const log = readFileSync(router.logFile, 'utf8');
    const own = readFileSync(routerSecretFile(topology.security!), 'utf8').trim();
    expect(log).toContain('router started');
    expect(log.includes(own)).toBe(false);
    expect(log.includes(APP_PASSWORD)).toBe(false);
  });

  it('switches over to the other region’s node as its own role (the catch-up on the origins), clients follow over TLS', async () => {
    // capture and apply of both nodes, from the topology, as their own roles
    for (const id of ['vl-1', 'wa-1'])
      for (const kind of ['capture', 'apply'] as const) {
        const p = launch(
          kind,
          id,
          {},
          {
            logFile: resolve(`.cache/test-logs/${kind}-secured-router-${id}-${Date.now()}.log`),
            args: ['--topology', stack.topologyFile!, '--node', id],
            env: { PGPASSWORD: '' },
          },
        );
        services.push(p);
      }
    await Promise.all(
      services.map((p) =>
        p.waitForLog(p.kind === 'capture' ? /capture session starting/ : /apply session running/),
      ),
    );
    const entry = topology.routers.find((r) => r.region === 'vlaanderen')!;
    const api = `http://127.0.0.1:${entry.controlPort}`;
    const res = await fetch(`${api}/switchover?to=wa-1`, { method: 'POST' });
    const body = await res.text();
    expect(res.status, body).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ kind: 'switchover', from: 'vl-1', to: 'wa-1' });
    const c = client('orders', APP_PASSWORD, verified);
    await c.connect();
    try {
      const where = await c.query<{ port: string; usename: string; ssl: boolean }>(
        `select current_setting('port') as port, a.usename, s.ssl
           from pg_stat_activity a join pg_stat_ssl s using (pid) where a.pid = pg_backend_pid()`,
      );
      const wa = new URL(stack.regions.flatMap((r) => r.nodes).find((n) => n.id === 'wa-1')!.url);
      expect(where.rows).toEqual([{ port: wa.port, usename: 'orders', ssl: true }]);
      // what was written through vl-1 is there: wa-1 had applied it before the switch
      expect((await c.query('select by_role from routed where id = 1')).rows).toEqual([
        { by_role: 'orders' },
      ]);
    } finally {
      await c.end();
    }
  });

  it('no log, /metrics or /status of the router, capture or apply holds a secret', async () => {
    const secrets = [...stackSecretValues(stack), APP_PASSWORD];
    const texts: [string, string][] = [];
    for (const p of [router!, ...services]) texts.push([p.logFile, readFileSync(p.logFile, 'utf8')]);
    const entry = topology.routers.find((r) => r.region === 'vlaanderen')!;
    const endpoints = [
      `http://127.0.0.1:${entry.controlPort}/metrics`,
      `http://127.0.0.1:${entry.controlPort}/status`,
      ...topology.nodes.flatMap((n) => [
        `http://127.0.0.1:${n.captureMetricsPort}/metrics`,
        `http://127.0.0.1:${n.applyMetricsPort}/metrics`,
      ]),
    ];
    for (const e of endpoints) {
      const res = await fetch(e);
      expect(res.status, e).toBe(200);
      texts.push([e, await res.text()]);
    }
    const found = texts.flatMap(([where, text]) =>
      secrets.filter((s) => text.includes(s)).map((s) => `${where} holds a secret (${s.slice(0, 4)}…)`),
    );
    expect(secrets.length).toBeGreaterThan(10);
    expect(found).toEqual([]);
  });
});
