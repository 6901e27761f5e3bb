/**
 * A secured stack of a test file's own (TLS and authentication on every link, as `brabant up`
 * starts it), and pairs of nodes on it that run as production does: a topology file with the
 * stack's security section, each node set up by `brabant node init` (its roles, Kafka users and
 * ACLs), and capture and apply started with `--topology FILE --node ID`, so they log in as their
 * own roles and users with the passwords from the secrets folder.
 *
 * Each pair gets regions of its own (so topics of its own: brabant.<region>.changes) and node ids
 * of its own. The test process logs in to the nodes as the stack's superuser (PGPASSWORD).
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { type Stack, startStack, stopRecorded, withoutExternal } from '../../infra/stack.ts';
import type { StackSecurityInfo } from '../../infra/stack-state.ts';
import { launch } from '../../services/control/launcher.ts';
import { initNode } from '../../services/control/node-init.ts';
import { initStackNodes } from '../../services/control/stack-commands.ts';
import { slotName } from '../../services/protocol/names.ts';
import { readSecretFile } from '../../services/runtime/security.ts';
import { formatTopology, readTopology, type Topology } from '../../services/runtime/topology.ts';
import { kafkaUser, secretFile } from '../../services/runtime/topology-security.ts';
import type { Pair, Side } from './pair.ts';
import type { ServiceProcess } from './services.ts';
import { createDatabase, node, uniqueName } from './stack.ts';

export type SecuredStack = Stack & { security: StackSecurityInfo };

export async function securedStack(name: string): Promise<SecuredStack> {
  const workDir = resolve(`.cache/test-stack-${name}`);
  await stopRecorded(workDir);
  rmSync(workDir, { recursive: true, force: true });
  const started = Date.now();
  const stack = await startStack(
    {
      regions: [
        { name: 'vlaanderen', nodes: 1 },
        { name: 'wallonie', nodes: 1 },
      ],
      kafka: 'shared',
    },
    { workDir, basePort: 0, env: withoutExternal(process.env), security: 'secured' },
  );
  console.log(`[${name}] secured stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (stack.security === undefined) throw new Error('the secured stack has no security');
  // this process's own connections (createDatabase, the sides' clients) as the superuser
  process.env.PGPASSWORD = readSecretFile(stack.security.adminPasswordFile, 'the superuser');
  // as `brabant up` does: vl-1 and wa-1 set up, their roles and Kafka users made
  await initStackNodes(stack, () => {});
  console.log(
    `[${name}] nodes set up (brabant node init) after ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  return stack as SecuredStack;
}

/** The stack's topology with two nodes of a test's own, in regions of their own, in database `db`. */
export function pairTopology(stack: SecuredStack, db: string): { topology: Topology; file: string } {
  const base = readTopology(stack.topologyFile!);
  const tag = uniqueName('p').slice(2);
  const regions = base.regions.map((r) => ({ ...r, name: `${r.name.slice(0, 2)}_${tag}` }));
  const nodes = base.nodes.map((n, i) => {
    const u = new URL(n.postgres);
    u.pathname = `/${db}`;
    return { id: `${n.id.slice(0, 2)}${tag}`, region: regions[i]!.name, postgres: u.toString() };
  });
  const file = join(stack.workDir, 'pairs', `${tag}.yaml`);
  mkdirSync(join(stack.workDir, 'pairs'), { recursive: true });
  // the pair's nodes are on vl-1's and wa-1's servers: their roles' passwords are those nodes';
  // their Kafka users are new
  const sec = base.security!;
  for (const [i, r] of base.regions.entries())
    copyFileSync(
      secretFile(sec, { kafka: sec.kafkaAdmin, region: r.name }),
      secretFile(sec, { kafka: sec.kafkaAdmin, region: regions[i]!.name }),
    );
  base.nodes.forEach((n, i) => {
    const id = nodes[i]!.id;
    for (const role of [sec.captureRole, sec.applyRole])
      copyFileSync(
        secretFile(sec, { postgres: role, node: n.id }),
        secretFile(sec, { postgres: role, node: id }),
      );
    for (const service of ['capture', 'apply'] as const)
      writeFileSync(
        secretFile(sec, { kafka: kafkaUser(service, id) }),
        `${randomBytes(24).toString('base64url')}\n`,
        {
          mode: 0o600,
        },
      );
  });
  const topology: Omit<Topology, 'file'> = { ...base, regions, nodes, routers: [] };
  writeFileSync(file, formatTopology(topology, `a test pair on ${stack.workDir}`));
  return { topology: readTopology(file), file };
}

/** Like replicationPair, on the secured stack: node init for both nodes, services from the topology. */
export async function securedPair(
  stack: SecuredStack,
  schemaSql: string,
  opts: { ddlRoles?: string[] } = {},
): Promise<Pair> {
  const name = uniqueName('t');
  const drops: (() => Promise<void>)[] = [];
  const clients: pg.Client[] = [];
  const urls: string[] = [];
  for (const id of ['vl-1', 'wa-1']) {
    const db = await createDatabase(node(id, stack), 't', name);
    drops.push(db.drop);
    const client = new pg.Client({ connectionString: db.url });
    // the stack stopping under a test that failed ends it: not an error of the run
    client.on('error', () => {});
    clients.push(client);
    await client.connect();
    // the same schema on both nodes, made before the set-up: nothing of it is replicated
    await client.query(schemaSql);
    urls.push(db.url);
  }
  const { topology, file } = pairTopology(stack, name);
  try {
    for (const n of topology.nodes)
      await initNode({
        topology,
        nodeId: n.id,
        say: () => {},
        ...(opts.ddlRoles ? { ddlRoles: opts.ddlRoles } : {}),
      });
  } catch (err) {
    for (const c of clients) await c.end().catch(() => {});
    for (const d of drops) await d().catch(() => {});
    throw err;
  }
  const sides: Side[] = topology.nodes.map((n, i) => ({
    node: node(i === 0 ? 'vl-1' : 'wa-1', stack),
    names: {
      nodeId: n.id,
      region: n.region,
      topic: `brabant.${n.region}.changes`,
      slot: slotName(n.id),
      publication: slotName(n.id),
      dbUrl: urls[i]!,
    },
    client: clients[i]!,
    url: urls[i]!,
  }));
  const processes: ServiceProcess[] = [];
  const logs = resolve('.cache/test-logs');
  const start = (kind: 'capture' | 'apply', side: Side, env: Record<string, string>) => {
    const p = launch(
      kind,
      side.names.nodeId,
      { metricsPort: 0 },
      {
        logFile: join(logs, `${kind}-${side.names.nodeId}-${Date.now()}.log`),
        args: ['--topology', file, '--node', side.names.nodeId],
        env,
      },
    );
    processes.push(p);
    return p;
  };
  return {
    vl: sides[0]!,
    wa: sides[1]!,
    sides,
    capture: (side, env = {}) => start('capture', side, { BRABANT_CAPTURE_BATCH_MS: '5', ...env }),
    apply: (side, env = {}) => start('apply', side, { BRABANT_APPLY_RETRY_MAX_MS: '1000', ...env }),
    async cleanup() {
      for (const p of processes) await p.kill('SIGKILL');
      for (const c of clients) await c.end().catch(() => {});
      for (const d of drops) await d().catch(() => {});
    },
  };
}

/** Every log file a secured run wrote: the stack's components' and the services'. */
export function logFilesOf(stack: Stack, services: ServiceProcess[]): string[] {
  return [...stack.pids.map((p) => p.logFile), ...services.map((s) => s.logFile)];
}

/** Every secret of the stack's secrets folder: its passwords, and each base64 line of its keys. */
export function stackSecretValues(stack: SecuredStack): string[] {
  const dir = stack.security.secrets;
  return readdirSync(dir)
    .filter((f) => !/\.(pem|ext|csr|srl|p12)$/.test(f))
    .flatMap((f) => {
      const text = readFileSync(join(dir, f), 'utf8');
      // a key: any of its base64 lines in a log is a leak
      if (f.endsWith('.key')) return text.split('\n').filter((l) => l.length >= 32 && !l.startsWith('-----'));
      return [text.trim()];
    });
}
