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
import { readTopology } from '../services/runtime/topology.ts';
import { routerSecretFile } from '../services/runtime/topology-security.ts';
import { type SecuredStack, securedStack } from './support/secured.ts';

let stack: SecuredStack;
let router: LaunchedService | undefined;
const APP_PASSWORD = 'orders; pw 0123456789';

beforeAll(async () => {
  stack = await securedStack('router');
}, 180_000);
afterAll(async () => {
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
    for (const id of ['vl-1', 'wa-1'])
      await onNode(id, async (c) => {
        await c.query(`create role orders login password '${APP_PASSWORD.replaceAll("'", "''")}'`);
        await c.query(
          'create table if not exists routed (id int primary key, by_role text default current_user)',
        );
        await c.query('grant select, insert on routed to orders');
      });
    const topology = readTopology(stack.topologyFile!);
    const entry = topology.routers.find((r) => r.region === 'vlaanderen')!;
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
    const client = (user: string, password: string, ssl: pg.ClientConfig['ssl']) => {
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
    };
    const verified = { ca, servername: 'localhost' };

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
});
