/**
 * The secured stack (TLS and authentication on every link, as `brabant up` starts it): plaintext
 * and wrong credentials refused by Kafka, PostgreSQL and the registry; a capture that tries to
 * write another region's topic denied by an ACL, and saying so; the roles capture and apply run
 * as are not superusers and hold what node init grants; the convergence proof (conflicts,
 * deletes, kill -9) with every service on its own role and user; and, last, no log of the whole
 * run holds a secret.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registryClientTls } from '../infra/registry/registry.ts';
import { registryRequest } from '../services/protocol/registry-http.ts';
import { SchemaRegistryClient } from '../services/protocol/schema-registry.ts';
import { readSecretFile } from '../services/runtime/security.ts';
import { readTopology } from '../services/runtime/topology.ts';
import { kafkaUser, secretFile } from '../services/runtime/topology-security.ts';
import { brabant } from './support/cli.ts';
import { convergenceSuite } from './support/convergence.ts';
import type { Pair } from './support/pair.ts';
import { type SecuredStack, securedPair, securedStack, stackSecretValues } from './support/secured.ts';
import type { ServiceProcess } from './support/services.ts';

let stack: SecuredStack;
const launched: ServiceProcess[] = [];

beforeAll(async () => {
  stack = await securedStack('secured');
});
afterAll(async () => {
  await stack?.stop();
});

const ca = () => readFileSync(stack.security.ca, 'utf8');
const topology = () => readTopology(stack.topologyFile!);
const brokers = () => stack.regions[0]!.kafkaBrokers;
const nodeUrl = (id: string, user?: string, params?: Record<string, string>) => {
  const n = stack.regions.flatMap((r) => r.nodes).find((x) => x.id === id)!;
  const u = new URL(n.url);
  if (user !== undefined) u.username = user;
  for (const [k, v] of Object.entries(params ?? {})) u.searchParams.set(k, v);
  return u.toString();
};

async function connectError(config: pg.ClientConfig): Promise<{ code?: string; message: string }> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
    await c.end();
    return { message: 'connected' };
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
}

async function kafkaError(opts: ConstructorParameters<typeof Kafka>[0]): Promise<string> {
  const admin = new Kafka({
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
    connectionTimeout: 3000,
    requestTimeout: 5000,
    ...opts,
  }).admin();
  try {
    await admin.connect();
    await admin.listTopics();
    return 'connected';
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

describe('secured stack: who gets in', { timeout: 120_000 }, () => {
  it('Kafka refuses plaintext, a wrong password and an unknown user; the right user gets in', async () => {
    const t = topology();
    const user = kafkaUser('capture', 'vl-1');
    const password = readSecretFile(secretFile(t.security!, { kafka: user }), user);
    const ssl = { ca: [ca()] };
    expect(await kafkaError({ brokers: brokers() })).toMatch(/Closed connection|ECONNRESET|timeout/i);
    expect(
      await kafkaError({
        brokers: brokers(),
        ssl,
        sasl: { mechanism: 'scram-sha-512', username: user, password: 'wrong' },
      }),
    ).toMatch(/KafkaJSSASLAuthenticationError.*invalid credentials/);
    expect(
      await kafkaError({
        brokers: brokers(),
        ssl,
        sasl: { mechanism: 'scram-sha-512', username: 'nobody', password },
      }),
    ).toMatch(/KafkaJSSASLAuthenticationError/);
    // TLS with a certificate the client does not trust: refused by the client
    expect(
      await kafkaError({
        brokers: brokers(),
        ssl: true,
        sasl: { mechanism: 'scram-sha-512', username: user, password },
      }),
    ).toMatch(/self.signed|unable to verify|certificate/i);
    expect(
      await kafkaError({
        brokers: brokers(),
        ssl,
        sasl: { mechanism: 'scram-sha-512', username: user, password },
      }),
    ).toBe('connected');
  });

  it('PostgreSQL refuses plaintext (pg_hba, by name) and wrong passwords, and checks its certificate', async () => {
    const plain = await connectError({
      connectionString: nodeUrl('vl-1', 'postgres', { sslmode: 'disable' }),
    });
    expect(plain.code).toBe('28000');
    expect(plain.message).toMatch(/no encryption/);
    const t = topology();
    const role = t.security!.captureRole;
    // (a URL without a password parses to '', which beats a `password` option: it goes in the URL)
    const wrongUrl = new URL(nodeUrl('vl-1', role));
    wrongUrl.password = 'wrong';
    expect((await connectError({ connectionString: wrongUrl.toString() })).code).toBe('28P01');
    const rightUrl = new URL(nodeUrl('vl-1', role));
    rightUrl.password = encodeURIComponent(
      readSecretFile(secretFile(t.security!, { postgres: role, node: 'vl-1' }), role),
    );
    expect((await connectError({ connectionString: rightUrl.toString() })).message).toBe('connected');
    // verify-full against another CA's trust: the server's certificate is refused by the client
    const untrusted = new URL(rightUrl);
    untrusted.searchParams.delete('sslrootcert');
    expect((await connectError({ connectionString: untrusted.toString() })).message).toMatch(
      /self.signed|unable to verify|certificate/i,
    );
  });

  it('the registry answers HTTPS only, and only clients with a certificate of the stack’s CA', async () => {
    const url = stack.registryUrl;
    expect(url).toMatch(/^https:/);
    const withCert = registryClientTls(stack.security);
    const ok = await registryRequest(`${url}/subjects`, {
      method: 'GET',
      headers: {},
      timeoutMs: 5000,
      tls: withCert,
    });
    expect(ok.status).toBe(200);
    const noCert = await registryRequest(`${url}/subjects`, {
      method: 'GET',
      headers: {},
      timeoutMs: 5000,
      tls: { ca: withCert.ca! },
    }).then(
      (r) => `answered ${r.status}`,
      (err: Error) => err.message,
    );
    expect(noCert).not.toMatch(/answered 2/);
    const plain = await registryRequest(url.replace('https:', 'http:'), {
      method: 'GET',
      headers: {},
      timeoutMs: 5000,
    }).then(
      (r) => `answered ${r.status}`,
      (err: Error) => err.message,
    );
    expect(plain).not.toMatch(/answered 2/);
    // the client Brabant's services use, with the certificate: a schema registered and read back
    const client = new SchemaRegistryClient({ url, tls: withCert });
    const id = await client.register('security-test-value', { type: 'record', name: 'r', fields: [] });
    expect(JSON.parse(await new SchemaRegistryClient({ url, tls: withCert }).schemaById(id))).toMatchObject({
      name: 'r',
    });
  });
});

describe('secured stack: what the services may do', { timeout: 180_000 }, () => {
  let pair: Pair | undefined;
  afterAll(async () => {
    await pair?.cleanup();
  });

  it('capture and apply run as their own roles (not superusers, over TLS), holding exactly the grants node init gives', async () => {
    pair = await securedPair(stack, 'create table t (id int primary key, v text)');
    const procs = [pair.capture(pair.vl), pair.apply(pair.vl), pair.capture(pair.wa), pair.apply(pair.wa)];
    launched.push(...procs);
    await Promise.all(
      procs.map((p) =>
        p.waitForLog(p.kind === 'capture' ? /capture session starting/ : /apply session running/),
      ),
    );
    await pair.vl.client.query("insert into t values (1, 'from vl')");
    await pair.wa.client.query("insert into t values (2, 'from wa')");
    for (const side of pair.sides) {
      const deadline = Date.now() + 30_000;
      while ((await side.client.query('select count(*)::int as n from t')).rows[0].n < 2) {
        if (Date.now() > deadline) throw new Error(`${side.names.nodeId} never got the peer's row`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const c = pair.vl.client;
    const sessions = await c.query<{ usename: string; ssl: boolean; app: string }>(
      `select a.usename, s.ssl, a.application_name as app from pg_stat_activity a join pg_stat_ssl s using (pid)
        where a.application_name like $1 order by 3`,
      [`brabant-%-${pair.vl.names.nodeId}%`],
    );
    expect(sessions.rows.length).toBeGreaterThanOrEqual(3);
    for (const s of sessions.rows) {
      expect(s.ssl).toBe(true);
      expect(s.usename).toBe(s.app.startsWith('brabant-capture') ? 'brabant_capture' : 'brabant_apply');
    }
    const slot = await c.query<{ usename: string; ssl: boolean }>(
      `select a.usename, s.ssl from pg_replication_slots r join pg_stat_activity a on a.pid = r.active_pid
         join pg_stat_ssl s on s.pid = a.pid where r.slot_name = $1`,
      [pair.vl.names.slot],
    );
    expect(slot.rows).toEqual([{ usename: 'brabant_capture', ssl: true }]);
    const roles = await c.query(
      `select rolname, rolsuper, rolreplication, rolcreatedb, rolcreaterole, rolbypassrls, rolinherit
         from pg_roles where rolname in ('brabant_capture', 'brabant_apply') order by 1`,
    );
    expect(roles.rows).toEqual([
      {
        rolname: 'brabant_apply',
        rolsuper: false,
        rolreplication: false,
        rolcreatedb: false,
        rolcreaterole: false,
        rolbypassrls: false,
        rolinherit: false,
      },
      {
        rolname: 'brabant_capture',
        rolsuper: false,
        rolreplication: true,
        rolcreatedb: false,
        rolcreaterole: false,
        rolbypassrls: false,
        rolinherit: false,
      },
    ]);
    // neither owns anything in the node's database, nor is a member of any role
    const owned = await c.query(
      `select count(*)::int as n from pg_class where relowner in (select oid from pg_roles where rolname like 'brabant\\_%')`,
    );
    expect(owned.rows[0].n).toBe(0);
    const member = await c.query(
      `select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.member where r.rolname like 'brabant\\_%'`,
    );
    expect(member.rows).toEqual([]);
    const can = await c.query(
      `select
         has_table_privilege('brabant_capture', 'public.t', 'select') as cap_select,
         has_table_privilege('brabant_capture', 'brabant.tombstones', 'select') as cap_tombstones,
         has_function_privilege('brabant_capture', 'brabant.reconcile_publications(name, name, text[])', 'execute') as cap_reconcile,
         has_function_privilege('brabant_capture', 'pg_replication_origin_session_setup(text)', 'execute') as cap_origin,
         has_table_privilege('brabant_apply', 'public.t', 'insert, update, delete, truncate') as apply_write,
         has_table_privilege('brabant_apply', 'brabant.conflicts', 'insert') as apply_conflicts,
         has_function_privilege('brabant_apply', 'pg_replication_origin_xact_setup(pg_lsn, timestamptz)', 'execute') as apply_origin,
         has_function_privilege('brabant_apply', 'brabant.reconcile_publications(name, name, text[])', 'execute') as apply_reconcile,
         has_parameter_privilege('brabant_apply', 'session_replication_role', 'set') as apply_srr,
         has_parameter_privilege('brabant_capture', 'session_replication_role', 'set') as cap_srr,
         has_database_privilege('brabant_apply', current_database(), 'create') as apply_create_schema,
         has_schema_privilege('brabant_apply', 'public', 'create') as apply_create_table`,
    );
    expect(can.rows[0]).toEqual({
      cap_select: false,
      cap_tombstones: false,
      cap_reconcile: true,
      cap_origin: false,
      apply_write: true,
      apply_conflicts: true,
      apply_origin: true,
      apply_reconcile: false,
      apply_srr: true,
      cap_srr: false,
      apply_create_schema: false,
      apply_create_table: false,
    });
  });

  it('a capture that tries to write another region’s topic is denied by Kafka’s ACLs and says so', async () => {
    const side = pair!.vl;
    const other = pair!.wa.names.topic;
    // its Kafka user itself, under its own transactional id: its own topic yes, the other region's no
    const t = readTopology(join(stack.workDir, 'topology.yaml'));
    const user = kafkaUser('capture', 'vl-1');
    const kafka = new Kafka({
      brokers: brokers(),
      ssl: { ca: [ca()] },
      sasl: {
        mechanism: 'scram-sha-512',
        username: user,
        password: readSecretFile(secretFile(t.security!, { kafka: user }), user),
      },
      logLevel: logLevel.NOTHING,
      retry: { retries: 2 },
    });
    const producer = kafka.producer({
      transactionalId: 'brabant-capture-vl-1',
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    try {
      const own = await producer.transaction();
      await own.send({ topic: 'brabant.vlaanderen.changes', messages: [{ key: 'vl-1', value: 'x' }] });
      await own.abort();
      const tx = await producer.transaction();
      const denied = await tx
        .send({ topic: 'brabant.wallonie.changes', messages: [{ key: 'vl-1', value: 'x' }] })
        .then(
          () => 'sent',
          (err: Error) => err.message,
        );
      await tx.abort().catch(() => {});
      expect(denied).toMatch(/Not authorized to access topics: \[Topic authorization failed\]/);
    } finally {
      await producer.disconnect();
    }
    // and the capture service, pointed at the other region's topic, stops with the reason
    const rogue = pair!.capture(side, {
      BRABANT_CAPTURE_TOPIC: other,
      BRABANT_CAPTURE_SLOT: `${side.names.slot}_rogue`,
    });
    launched.push(rogue);
    const line = await rogue.waitForLog(/PERMISSION_DENIED/, 60_000);
    expect(line).toMatch(/ACLs deny it \(TOPIC_AUTHORIZATION_FAILED/);
    expect(line).toContain(other);
    expect(await rogue.exited).toBe(1);
  });

  it('a service given a wrong password stops, saying which credential was refused', async () => {
    const side = pair!.wa;
    const dir = join(stack.workDir, 'pairs');
    const wrong = join(dir, 'wrong.password');
    (await import('node:fs')).writeFileSync(wrong, 'not-the-password\n', { mode: 0o600 });
    const kafkaWrong = pair!.apply(side, {
      BRABANT_KAFKA_PASSWORD_FILE: wrong,
      BRABANT_APPLY_GROUP: 'wrong-group',
    });
    const pgWrong = pair!.capture(side, {
      BRABANT_PG_PASSWORD_FILE: wrong,
      BRABANT_CAPTURE_SLOT: 'never_made',
    });
    launched.push(kafkaWrong, pgWrong);
    expect(await pgWrong.waitForLog(/AUTHENTICATION_FAILED/)).toMatch(
      /password authentication failed for user \\*"brabant_capture/,
    );
    expect(await kafkaWrong.waitForLog(/AUTHENTICATION_FAILED/)).toMatch(/Kafka refused the credentials/);
    expect(await pgWrong.exited).toBe(1);
    expect(await kafkaWrong.exited).toBe(1);
  });
});

convergenceSuite(
  'convergence on the secured stack (every service on its own role and Kafka user)',
  async (schema) => {
    const p = await securedPair(stack, schema);
    // every process the suite starts, for the log check below
    const capture = p.capture.bind(p);
    const apply = p.apply.bind(p);
    p.capture = (side, env, root) => {
      const s = capture(side, env, root);
      launched.push(s);
      return s;
    };
    p.apply = (side, env, root) => {
      const s = apply(side, env, root);
      launched.push(s);
      return s;
    };
    return p;
  },
);

describe('secured stack: secrets', () => {
  it('brabant status reaches the secured Kafka and registry as the operator, and prints no secret', async () => {
    const r = await brabant(['status', '--json', '--topology', stack.topologyFile!], {
      ...process.env,
      BRABANT_HOME: stack.workDir,
    });
    const report = JSON.parse(r.out.slice(r.out.indexOf('{'))) as {
      regions: { name: string; kafka: { reachable: boolean }; registry: { reachable: boolean } }[];
    };
    expect(report.regions.length).toBeGreaterThan(0);
    for (const region of report.regions) {
      expect(region.kafka, `${region.name}: ${JSON.stringify(region.kafka)}`).toMatchObject({
        reachable: true,
      });
      expect(region.registry, `${region.name}: ${JSON.stringify(region.registry)}`).toMatchObject({
        reachable: true,
      });
    }
    for (const secret of stackSecretValues(stack)) expect(r.out.includes(secret)).toBe(false);
  });

  it('brabant ddl check reaches the secured stack’s registry with its client certificate', async () => {
    const node = stack.regions[0]!.nodes[0]!;
    const r = await brabant(
      ['ddl', 'check', '--node', node.id, 'create table ddl_probe (id int primary key, note text)'],
      {
        ...process.env,
        BRABANT_HOME: stack.workDir,
        PGPASSWORD: readSecretFile(stack.security.adminPasswordFile, 'the superuser'),
      },
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('checked with the registry: public.ddl_probe compatible');
    for (const secret of stackSecretValues(stack)) expect(r.out.includes(secret)).toBe(false);
  });

  it('no log of the whole run holds a password or a private key', () => {
    const secrets = stackSecretValues(stack);
    expect(secrets.length).toBeGreaterThan(20);
    const files = [
      ...stack.pids.map((p) => p.logFile),
      ...launched.map((s) => s.logFile),
      ...readdirSync(join(stack.workDir, 'logs')).map((f) => join(stack.workDir, 'logs', f)),
    ];
    const found: string[] = [];
    for (const f of new Set(files)) {
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch {
        continue;
      }
      for (const s of secrets) if (text.includes(s)) found.push(`${f} holds a secret (${s.slice(0, 4)}…)`);
    }
    console.log(`${files.length} log files, ${secrets.length} secrets: ${found.length} found`);
    expect(found).toEqual([]);
  });
});
