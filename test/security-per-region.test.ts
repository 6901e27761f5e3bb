/**
 * The secured local stack with a Kafka cluster per region (`brabant up --kafka per-region`):
 * each cluster's peer listener (reached through the link) speaks SASL_SSL, the registry database's
 * standby in Wallonie streams from its primary over TLS with a SCRAM password, the follower
 * registry on it serves HTTPS with mutual TLS only, and capture and apply of both nodes run from
 * the stack's topology as their own roles and Kafka users — rows flow both ways, across a cut of
 * the link and its heal, and no secret of the stack is in any log.
 */
import { readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkControl } from '../infra/link/control.ts';
import { pgClientConfig } from '../infra/postgres/postgres.ts';
import { registryDbPasswordFile, stackSecrets } from '../infra/security/stack-secrets.ts';
import { type Stack, startStack, stopRecorded, withoutExternal } from '../infra/stack.ts';
import { readState } from '../infra/stack-state.ts';
import { type LaunchedService, launch } from '../services/control/launcher.ts';
import { initStackNodes } from '../services/control/stack-commands.ts';
import { readSecretFile } from '../services/runtime/security.ts';
import { readTopology } from '../services/runtime/topology.ts';
import { type SecuredStack, stackSecretValues } from './support/secured.ts';

let stack: SecuredStack;
const services: LaunchedService[] = [];
const clients = new Map<string, pg.Client>();

beforeAll(async () => {
  const workDir = resolve('.cache/test-stack-per-region-secured');
  await stopRecorded(workDir);
  rmSync(workDir, { recursive: true, force: true });
  const started: Stack = await startStack(
    {
      regions: [
        { name: 'vlaanderen', nodes: 1 },
        { name: 'wallonie', nodes: 1 },
      ],
      kafka: 'per-region',
    },
    { workDir, basePort: 0, env: withoutExternal(process.env), security: 'secured' },
  );
  stack = started as SecuredStack;
  await initStackNodes(stack, () => {});
  const password = readSecretFile(stack.security.adminPasswordFile, 'the superuser');
  for (const n of stack.regions.flatMap((r) => r.nodes)) {
    const c = new pg.Client(pgClientConfig(n.url, password));
    c.on('error', () => {});
    await c.connect();
    clients.set(n.id, c);
  }
}, 300_000);
afterAll(async () => {
  for (const s of services) await s.kill('SIGKILL');
  for (const c of clients.values()) await c.end().catch(() => {});
  await stack?.stop();
});

/** An HTTPS GET of `url` with these TLS options: the status, or the error's message. */
function get(url: string, tls: { ca: string; cert?: string; key?: string }): Promise<number | string> {
  return new Promise((done) => {
    const req = request(url, { ...tls, servername: 'localhost', timeout: 10_000 }, (res) => {
      res.resume();
      done(res.statusCode ?? 0);
    });
    req.on('error', (err) => done(err.message));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function rows(id: string): Promise<number[]> {
  const r = await clients.get(id)!.query<{ id: number }>('select id from t order by id');
  return r.rows.map((x) => x.id);
}

async function until(what: string, f: () => Promise<boolean>, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('secured stack, a Kafka cluster per region', { timeout: 240_000 }, () => {
  it('replicates both ways across the link over SASL_SSL, the follower registry and its standby over TLS', async () => {
    const topology = readTopology(stack.topologyFile!);
    const [vl, wa] = topology.regions;
    // each region its own cluster; the other region's reached through the link, not its own port
    expect(vl!.kafka).not.toEqual(wa!.kafka);
    expect(wa!.kafkaFromPeers).not.toEqual(wa!.kafka);
    expect(wa!.registry).toMatch(/^https:/);
    expect(wa!.registryPrimary).toMatch(/^https:/);

    // the follower registry: mutual TLS only
    const ca = readFileSync(stack.security.ca, 'utf8');
    const root = wa!.registry.replace(/\/apis\/ccompat\/v7$/, '');
    const tls = {
      ca,
      cert: readFileSync(topology.security!.registryCertificate!, 'utf8'),
      key: readFileSync(topology.security!.registryKey!, 'utf8'),
    };
    expect(await get(`${root}/apis/ccompat/v7/subjects`, tls)).toBe(200);
    expect(await get(`${root}/apis/ccompat/v7/subjects`, { ca })).not.toBe(200);

    // the standby of the registry database streams from its primary over TLS
    const registryDb = readState(stack.workDir)?.pids.find((p) => p.kind === 'registry-db');
    if (registryDb?.kind !== 'registry-db') throw new Error('no registry-db in the stack state');
    const primaryUrl = `postgres://postgres@127.0.0.1:${registryDb.spec.port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(stack.security.ca)}`;
    const db = new pg.Client(
      pgClientConfig(
        primaryUrl,
        readSecretFile(registryDbPasswordFile(stackSecrets(stack.workDir), 'postgres'), 'registry-db'),
      ),
    );
    await db.connect();
    try {
      const rep = await db.query<{ ssl: boolean; state: string }>(
        'select s.ssl, r.state from pg_stat_replication r join pg_stat_ssl s using (pid)',
      );
      expect(rep.rows).toEqual([{ ssl: true, state: 'streaming' }]);
    } finally {
      await db.end();
    }

    for (const c of clients.values()) {
      await c.query('set brabant.ddl_replication = off');
      await c.query('create table t (id int primary key, at text)');
    }
    for (const n of topology.nodes)
      for (const kind of ['capture', 'apply'] as const)
        services.push(
          launch(
            kind,
            n.id,
            { metricsPort: 0 },
            {
              logFile: resolve(`.cache/test-logs/${kind}-${n.id}-per-region-secured-${Date.now()}.log`),
              args: ['--topology', stack.topologyFile!, '--node', n.id],
              env: { PGPASSWORD: '' },
            },
          ),
        );
    await Promise.all(
      services.map((s) =>
        s.waitForLog(s.kind === 'capture' ? /capture session starting/ : /apply session running/, 120_000),
      ),
    );
    await clients.get('vl-1')!.query("insert into t values (1, 'vl')");
    await clients.get('wa-1')!.query("insert into t values (2, 'wa')");
    for (const id of ['vl-1', 'wa-1'])
      await until(`both rows on ${id}`, async () => (await rows(id)).join() === '1,2');

    // the link cut: each region keeps writing into its own cluster; after the heal both agree
    const link = linkControl(stack.linkUrl!);
    await link.cut('reset');
    await clients.get('vl-1')!.query("insert into t select g, 'vl' from generate_series(10, 59) g");
    await clients.get('wa-1')!.query("insert into t select g, 'wa' from generate_series(60, 109) g");
    await new Promise((r) => setTimeout(r, 3000));
    expect((await rows('vl-1')).filter((x) => x >= 60)).toEqual([]);
    await link.heal();
    for (const id of ['vl-1', 'wa-1'])
      await until(`every row on ${id} after the heal`, async () => (await rows(id)).length === 102);

    // no secret of the stack in any log: its components' and the services'
    const secrets = stackSecretValues(stack);
    expect(secrets.length).toBeGreaterThan(10);
    for (const file of [...stack.pids.map((p) => p.logFile), ...services.map((s) => s.logFile)]) {
      const text = readFileSync(file, 'utf8');
      for (const s of secrets) expect(text.includes(s), `${file} holds a secret`).toBe(false);
    }
  });
});
