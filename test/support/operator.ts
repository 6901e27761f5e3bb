/**
 * A deployment of the test's own for the operator's commands (status, conflicts, dead letters,
 * the dashboard): a topology file over the shared test stack — two regions and nodes with names of
 * this test (so its change topics, slots and origins are its own), each node a fresh database on
 * the stack's vl-1 or wa-1, fixed free ports for every service and a router per region — run with
 * `brabant start --topology FILE --detach` exactly as a user would, and stopped with `brabant stop`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Link } from '../../infra/link/relay.ts';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { formatTopology, readTopology, type Topology } from '../../services/runtime/topology.ts';
import { brabant, freeBasePort, newHome, waitUntil } from './cli.ts';
import { createDatabase, node, stack, uniqueName } from './stack.ts';

export interface Deployment {
  home: string;
  file: string;
  topology: Topology;
  /** The nodes' database URLs, by node id. */
  urls: Map<string, string>;
  ids: [string, string];
  /** The relay in front of the first node (deploy with relayFirst). */
  link: Link | undefined;
  env: Record<string, string | undefined>;
  /** `brabant ARGS` against this deployment's topology and home. */
  cli(args: string[], timeoutMs?: number): Promise<{ code: number; out: string }>;
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(
    nodeId: string,
    text: string,
    values?: unknown[],
  ): Promise<R[]>;
  /** SQL on the server of a node, outside its database (in `postgres`). */
  admin(nodeId: string, text: string, values?: unknown[]): Promise<pg.QueryResultRow[]>;
  stop(): Promise<void>;
}

/**
 * `relayFirst`: the first node's PostgreSQL is reached through a TCP relay of the test's own
 * (`Deployment.link`), so a test can take the node away (`link.setCut('reset')`: connections
 * reset, new ones refused, as a node that went down) and bring it back (`link.heal()`).
 */
export async function deploy(prefix: string, opts: { relayFirst?: boolean } = {}): Promise<Deployment> {
  const s = stack();
  const tag = uniqueName(prefix).slice(prefix.length + 1);
  const regions = [`vl${tag}`, `wa${tag}`] as const;
  const ids: [string, string] = [`vl-${tag}`, `wa-${tag}`];
  const dbs = await Promise.all([createDatabase(node('vl-1')), createDatabase(node('wa-1'))]);
  // fixed ports below the ephemeral range (a client connection there may take one between check and start)
  let next = await freeBasePort(12);
  const port = async () => next++;
  let link: Link | undefined;
  if (opts.relayFirst) {
    const direct = new URL(dbs[0]!.url);
    const listenPort = await port();
    link = new Link([
      {
        name: `${ids[0]} postgres`,
        listenPort,
        targetHost: direct.hostname,
        targetPort: Number(direct.port),
      },
    ]);
    await link.start();
    direct.port = String(listenPort);
    dbs[0]!.url = direct.toString();
  }
  const urls = new Map(ids.map((id, i) => [id, dbs[i]!.url]));
  const shared = s.regions[0]!;
  const t: Omit<Topology, 'file'> = {
    peerStreams: 'direct',
    regions: regions.map((name) => ({
      name,
      kafka: shared.kafkaBrokers,
      kafkaFromPeers: shared.kafkaBrokers,
      registry: s.registryUrl,
      registryPrimary: s.registryUrl,
    })),
    nodes: [],
    routers: [],
  };
  for (const [i, id] of ids.entries())
    t.nodes.push({
      id,
      region: regions[i]!,
      postgres: dbs[i]!.url,
      captureMetricsPort: await port(),
      applyMetricsPort: await port(),
    });
  for (const r of regions)
    t.routers.push({ region: r, port: await port(), controlPort: await port(), database: 'app' });
  const home = newHome(prefix);
  const file = join(home, 'topology.yaml');
  writeFileSync(file, formatTopology(t, `test deployment ${tag}`));
  const env = {
    ...process.env,
    BRABANT_HOME: home,
    BRABANT_TOPOLOGY: file,
    // every test's change topic is its own; capture's heartbeat makes lag measurable
    BRABANT_CAPTURE_HEARTBEAT_MS: '500',
  };
  const cli = (args: string[], timeoutMs?: number) => brabant(args, env, timeoutMs);
  const sql = async <R extends pg.QueryResultRow>(
    nodeId: string,
    text: string,
    values?: unknown[],
    db?: string,
  ) => {
    const c = new pg.Client({
      connectionString: db === undefined ? urls.get(nodeId)! : withDatabase(urls.get(nodeId)!, db),
    });
    await c.connect();
    try {
      return (await c.query<R>(text, values)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    home,
    file,
    topology: readTopology(file),
    urls,
    ids,
    link,
    env,
    cli,
    sql,
    admin: (nodeId, text, values) => sql(nodeId, text, values, 'postgres'),
    stop: async () => {
      await cli(['stop']).catch(() => {});
      link?.heal();
      await link?.stop();
      for (const d of dbs) await d.drop().catch(() => {});
    },
  };
}

/**
 * Runs the deployment's services (`brabant start --detach`), returning once every capture and
 * apply says ready on /healthz (capture's slot streams, apply reads its clusters): `brabant
 * start` returns as soon as each service runs, also when its first session failed and retries,
 * and a DDL run before capture's slot exists would never be captured.
 */
export async function startServices(d: Deployment): Promise<void> {
  const r = await d.cli(['start', '--detach'], 240_000);
  if (r.code !== 0) throw new Error(`brabant start failed:\n${r.out}`);
  for (const n of d.topology.nodes)
    for (const port of [n.captureMetricsPort, n.applyMetricsPort])
      await waitUntil(
        `the service on port ${port} of ${n.id} ready`,
        async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true,
        120_000,
      );
}

/** Creates `items (id int primary key, v text)` on the first node and waits for its DDL on the second. */
export async function createItems(d: Deployment): Promise<void> {
  const [vl, wa] = d.ids;
  await d.sql(vl!, 'create table items (id int primary key, v text)');
  await waitUntil(
    'items on the peer',
    async () => (await d.sql(wa!, "select to_regclass('items') as r"))[0]!.r !== null,
  );
}
