/**
 * `brabant` CLI. Thin: parses arguments, loads config once, and calls the command modules.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../runtime/config.ts';
import { BrabantError, describeError } from '../runtime/errors.ts';
import { readTopology, type Topology } from '../runtime/topology.ts';
import { controlConfig } from './config.ts';
import { configurationDoc } from './config-docs.ts';
import { conflicts, parseSince } from './conflicts-commands.ts';
import { dashboard } from './dashboard-commands.ts';
import { ddl } from './ddl-commands.ts';
import { deadletters } from './deadletters-commands.ts';
import { demo } from './demo.ts';
import { link } from './link-commands.ts';
import { node } from './membership/commands.ts';
import { nodeCommand } from './node-init-commands.ts';
import { policy } from './policy-commands.ts';
import { resync } from './resync.ts';
import { chunkRowsOf } from './resync-plan.ts';
import { maintenance, switchover } from './router-commands.ts';
import { down, restart, up } from './stack-commands.ts';
import { start, stop, topologyFile } from './start-commands.ts';
import { operatorTopology, status } from './status-commands.ts';

const pick = (v: { router?: string; region?: string }) => ({
  ...(v.router ? { router: v.router } : {}),
  ...(v.region ? { region: v.region } : {}),
});

/** The topology whose routers switchover and maintenance may talk to: --topology, BRABANT_TOPOLOGY or the local stack's. */
function routersOf(flag: string | undefined, home: string): { topology?: Topology } {
  try {
    return { topology: readTopology(topologyFile(flag, home)) };
  } catch (err) {
    if (flag !== undefined) throw err;
    return {};
  }
}

/** A flag that is a number of seconds, or undefined when not given. */
function seconds(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} must be a number of seconds, not '${v}'`);
  return n;
}

const USAGE = `usage: brabant <command> [options]

commands:
  demo   start the two-region stack with capture and apply on each node, write in both regions at
         once (with conflicting updates), show progress, and show that both end identical
           --seconds N      how long to write (default 20)
           --kafka MODE     shared (default) or per-region (a Kafka cluster per region)
           --cut-link S     per-region: cut the link between the regions for S seconds in the
                            middle of the writes (both keep writing; they agree after the heal)
           --keep           leave the stack running afterwards
           --insecure       plaintext and no authentication (default: secured as \`brabant up\`, the
                            writers and the DDL as the demo's own role through the routers)
  up     start the local two-region stack (Kafka, PostgreSQL nodes vl-1 and wa-1, schema registry),
         TLS and authentication on every link (a CA, certificates and passwords in the stack folder's
         secrets/), each node set up (brabant node init)
           --insecure       plaintext and no authentication
           --base-port N    first loopback port (default BRABANT_BASE_PORT or 19090)
           --kafka MODE     shared (one cluster) or per-region (one cluster per region); default shared
           --peer-streams M per-region: apply reads the other region's cluster across the link
                            (direct, the default) or a local MirrorMaker 2 copy (mirror; with --insecure only)
           --reuse          start again from the data an earlier run left in the stack folder
           --detach         leave the stack running in the background and return
  down   stop the local stack started from this folder (PostgreSQL with a fast shutdown: connected
         clients are disconnected), and wait until none of its processes is left
           --purge          also delete its data and logs
  restart kafka|registry|registry-db|NODE
         stop one part of the running local stack and start it again on the same ports and data
  start [NODE…]  run capture and apply of the nodes (all by default) and the routers of their
         regions, from a topology file, supervised (a killed service is started again)
           --topology FILE  the topology (default BRABANT_TOPOLOGY, else the local stack's)
           --detach         run in the background; \`brabant stop\` stops them
           --no-routers     capture and apply only
  stop   stop what \`brabant start\` runs, and wait until every service has exited
  node init NODE   set a node up once, as a superuser, also one that holds data and takes writes:
         checks, publications, event triggers, sequences, tombstone triggers, slot, origins, the
         roles capture and apply run as, and (secured topology) their Kafka users, topics and ACLs
           --topology FILE      (default BRABANT_TOPOLOGY, else the local stack's)
           --admin-url URL      a superuser's URL (default: the node's as postgres; password PGPASSWORD)
           --database DB        the database to set up (default: the node URL's)
           --sequence-index N   the node's place for sequences (default: its place in the topology)
           --ddl-roles R,…      roles whose DDL apply replays as them (never a superuser)
           --tables S.T,…       the tables to replicate (default all)
  link cut|heal|delay MS|status
         the local stack's link between regions (--kafka per-region): cut every cross-region
         connection (--mode reset|blackhole), heal it, or slow it down by MS each way
  switchover   move a region's writes to another node (planned; clients wait, none fail)
           --region R --to NODE   (router URL from --router URL, BRABANT_ROUTER_URLS=R=http://…,
                                  or the router of region R in the topology file)
  maintenance start|end NODE   move writes away from a node and bring them back once it caught up
           --region R | --router URL
  ddl apply --node NODE (--file F | "SQL")   a schema change, checked against the schema registry
         before any node changes, run on NODE, then waited for until every node has applied it
           --database DB        the node's database (default postgres)
           --compatibility M    set the registry rule of the changed tables' subjects first (BACKWARD, FULL, …)
           --topic T            the node's change topic (default brabant.<region>.changes)
           --registry URL       another schema registry than the stack's
           --timeout S          how long to wait for the other nodes (default 60)
  ddl check --node NODE (--file F | "SQL")   only the registry check, nothing changes
  ddl resolve --node NODE --skip|--retry     answer the DDLs that failed on NODE and pause their
         streams: --skip (you changed NODE's schema yourself) or --retry (after fixing what was in the way)
  policy set --node NODE TABLE POLICY [--columns a,b]   a table's conflict policy (row_lww,
         column_lww, delta, no_delta, <kind>:<resolver>, custom:<function>), set on NODE and
         waited for until every node has it (--timeout S, default 60; --database DB)
  policy show --node NODE [TABLE]   the policies in force on NODE's tables
  status [--json] [--watch]   the state of every node, service, cluster, registry and router of
         the topology, the verdict first; exit 0 healthy, 1 degraded, 2 down, 3 could not run
           --topology FILE  (default BRABANT_TOPOLOGY, the local stack's, or the demo's left by --keep)
           --max-lag S      lag over S seconds is degraded (default 30)
  conflicts [--node N] [--table T] [--kind K] [--since 1h|ISO] [--limit N] [--json]
         the conflict log of the topology's nodes, newest first: both row versions, the
         resolution and the policy that decided
  deadletters [list|show ID|reapply ID|discard ID] [--node N] [--table T] [--open] [--json]
         dead letters of the topology's nodes and what was done with each; reapply applies one
         again through apply (at its original commit time, exactly once) once its cause is
         fixed, waiting for the result (--timeout S, default 60); discard closes it
  dashboard  a live page on loopback: nodes and routers, lag per origin, rows/s, conflicts/s per
         kind and retained WAL as plots over the last minutes, recent conflicts, dead letters,
         paused streams
           --port N         (default 19480; 0 picks a free one)   --topology FILE
  resync NODE [--table T…]   re-send NODE's current rows (and the deletes it remembers) into its
         change stream while it takes writes, chunk by chunk between watermarks, so every peer
         converges to it (the repair after SLOT_LOST; or to replay tables into a new consumer);
         stopped, the same command goes on where it was. All replicated tables by default
           --database DB    the node's database (default postgres)   --chunk-rows N (default 1000)
           --slot S         the slot of the node's capture, if the database has several
           --timeout S      how long to wait at the end for capture to have sent it all (default 300;
                            exit code 3 when it has not by then: it will once capture catches up)
           --topology FILE  find NODE in a topology file instead of the local stack
  node join NODE --from PEER   bring a new, empty node into the running cluster: schema and rows
         (with their versions) from one snapshot of PEER, each stream from its exact position, then
         it catches up from Kafka and joins its region's router (--topology FILE; --timeout S for
         the catch-up, default 600; --rebuild: NODE's data was lost and it comes back under its
         id; --undo: undo an unfinished join); an interrupted copy is undone and started again
  node part NODE   NODE leaves: the others apply all of it and let go of it (pruning no longer
         waits for it), its slot, origins and consumer groups go (--force: NODE unreachable, or
         with changes never sent); refused while its region's router points at it
  config-docs  print docs/configuration.md (every option of every service)
  help   show this text

environment: BRABANT_HOME (stack folder, default .brabant), BRABANT_BASE_PORT, BRABANT_KAFKA_BROKERS,
BRABANT_PG_URLS, BRABANT_REGISTRY_URL (use external components instead of starting them)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      'base-port': { type: 'string' },
      kafka: { type: 'string' },
      reuse: { type: 'boolean', default: false },
      detach: { type: 'boolean', default: false },
      purge: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      router: { type: 'string' },
      region: { type: 'string' },
      to: { type: 'string' },
      keep: { type: 'boolean', default: false },
      node: { type: 'string' },
      database: { type: 'string' },
      file: { type: 'string' },
      topic: { type: 'string' },
      registry: { type: 'string' },
      compatibility: { type: 'string' },
      timeout: { type: 'string' },
      skip: { type: 'boolean', default: false },
      retry: { type: 'boolean', default: false },
      columns: { type: 'string' },
      topology: { type: 'string' },
      'no-routers': { type: 'boolean', default: false },
      mode: { type: 'string' },
      'cut-link': { type: 'string' },
      'peer-streams': { type: 'string' },
      json: { type: 'boolean', default: false },
      watch: { type: 'boolean', default: false },
      'max-lag': { type: 'string' },
      table: { type: 'string', multiple: true },
      kind: { type: 'string' },
      since: { type: 'string' },
      limit: { type: 'string' },
      open: { type: 'boolean', default: false },
      port: { type: 'string' },
      'chunk-rows': { type: 'string' },
      slot: { type: 'string' },
      insecure: { type: 'boolean', default: false },
      'admin-url': { type: 'string' },
      'sequence-index': { type: 'string' },
      'ddl-roles': { type: 'string' },
      tables: { type: 'string' },
      from: { type: 'string' },
      rebuild: { type: 'boolean', default: false },
      undo: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const env = { ...process.env };
  if (values['base-port'] !== undefined) env.BRABANT_BASE_PORT = values['base-port'];
  const config = loadConfig(controlConfig, env);
  switch (command) {
    case 'up': {
      const kafka = values.kafka ?? 'shared';
      if (kafka !== 'shared' && kafka !== 'per-region') {
        throw new Error(`--kafka must be shared or per-region, not '${kafka}'`);
      }
      const peerStreams = values['peer-streams'] ?? 'direct';
      if (peerStreams !== 'direct' && peerStreams !== 'mirror')
        throw new Error(`--peer-streams must be direct or mirror, not '${peerStreams}'`);
      if (peerStreams === 'mirror' && kafka !== 'per-region')
        throw new Error(
          '--peer-streams mirror needs --kafka per-region (a cluster per region to mirror between)',
        );
      return up({
        config,
        kafka,
        peerStreams,
        reuse: values.reuse,
        detach: values.detach,
        security: values.insecure ? 'insecure' : 'secured',
      });
    }
    case 'down':
      return down({ config, purge: values.purge });
    case 'restart':
      return restart({ config, target: positionals[0] });
    case 'demo': {
      const seconds = Number(values.seconds ?? 20);
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600)
        throw new Error(`--seconds must be an integer from 1 to 3600, not '${values.seconds}'`);
      const kafka = values.kafka ?? 'shared';
      if (kafka !== 'shared' && kafka !== 'per-region')
        throw new Error(`--kafka must be shared or per-region, not '${kafka}'`);
      const cutLinkSeconds = Number(values['cut-link'] ?? 0);
      if (!Number.isInteger(cutLinkSeconds) || cutLinkSeconds < 0 || cutLinkSeconds > 3600)
        throw new Error(`--cut-link must be a number of seconds, not '${values['cut-link']}'`);
      return demo({
        config,
        seconds,
        keep: values.keep,
        kafka,
        cutLinkSeconds,
        security: values.insecure ? 'insecure' : 'secured',
      });
    }
    case 'start':
      return start({
        home: config.home,
        topology: values.topology,
        nodes: positionals,
        routers: !values['no-routers'],
        detach: values.detach,
      });
    case 'stop':
      return stop({ home: config.home });
    case 'link':
      return link({ home: config.home, action: positionals[0], arg: positionals[1], mode: values.mode });
    case 'switchover':
      return switchover({ ...pick(values), ...routersOf(values.topology, config.home), to: values.to });
    case 'maintenance':
      return maintenance({
        ...pick(values),
        ...routersOf(values.topology, config.home),
        action: positionals[0],
        node: positionals[1],
      });
    case 'ddl': {
      const timeout = Number(values.timeout ?? 60);
      if (!Number.isInteger(timeout) || timeout < 1)
        throw new Error(`--timeout must be a whole number of seconds, not '${values.timeout}'`);
      return ddl({
        config,
        action: positionals[0],
        node: values.node,
        database: values.database ?? 'postgres',
        sql: positionals.slice(1).join(' ') || undefined,
        file: values.file,
        topic: values.topic,
        registry: values.registry,
        compatibility: values.compatibility,
        timeoutSeconds: timeout,
        skip: values.skip,
        retry: values.retry,
      });
    }
    case 'policy': {
      const timeout = Number(values.timeout ?? 60);
      if (!Number.isInteger(timeout) || timeout < 1)
        throw new Error(`--timeout must be a whole number of seconds, not '${values.timeout}'`);
      return policy({
        config,
        action: positionals[0],
        node: values.node,
        database: values.database ?? 'postgres',
        table: positionals[1],
        policy: positionals[2],
        columns: values.columns,
        timeoutSeconds: timeout,
      });
    }
    case 'status':
      return status({
        home: config.home,
        topology: values.topology,
        json: values.json,
        watch: values.watch,
        maxLagSeconds: seconds(values['max-lag'], '--max-lag'),
      });
    case 'conflicts': {
      const limit = Number(values.limit ?? 50);
      if (!Number.isInteger(limit) || limit < 1)
        throw new Error(`--limit must be a whole number, not '${values.limit}'`);
      return conflicts({
        topology: operatorTopology(values.topology, config.home),
        json: values.json,
        filter: {
          limit,
          ...(values.node === undefined ? {} : { node: values.node }),
          ...(values.table === undefined ? {} : { table: oneTable(values.table) }),
          ...(values.kind === undefined ? {} : { kind: values.kind }),
          ...(values.since === undefined ? {} : { since: parseSince(values.since) }),
        },
      });
    }
    case 'deadletters':
      return deadletters({
        topology: operatorTopology(values.topology, config.home),
        action: positionals[0],
        id: positionals[1],
        node: values.node,
        table: values.table === undefined ? undefined : oneTable(values.table),
        open: values.open,
        json: values.json,
        timeoutSeconds: seconds(values.timeout, '--timeout') ?? 60,
      });
    case 'dashboard': {
      const port = Number(values.port ?? 19480);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new Error(`--port must be a port, not '${values.port}'`);
      return dashboard({ topology: operatorTopology(values.topology, config.home), port });
    }
    case 'resync': {
      const timeout = Number(values.timeout ?? 300);
      if (!Number.isInteger(timeout) || timeout < 0)
        throw new BrabantError(
          'CONFIG_INVALID',
          `--timeout must be a whole number of seconds, not '${values.timeout}'`,
        );
      return resync({
        config,
        node: positionals[0],
        database: values.database,
        tables: values.table ?? [],
        chunkRows: chunkRowsOf(values['chunk-rows']),
        topology: values.topology,
        slot: values.slot,
        timeoutSeconds: timeout,
      });
    }
    case 'node':
      // node init sets a node up (security); join and part change the cluster's membership
      if (positionals[0] === 'init')
        return nodeCommand({
          home: config.home,
          action: positionals[0],
          node: positionals[1],
          topology: values.topology,
          adminUrl: values['admin-url'],
          database: values.database,
          sequenceIndex: values['sequence-index'],
          ddlRoles: values['ddl-roles'],
          tables: values.tables,
        });
      return node({ ...values, action: positionals[0], node: positionals[1], home: config.home });
    case 'config-docs':
      process.stdout.write(configurationDoc());
      return 0;
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE);
      return 0;
    default:
      console.error(`unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

/** `--table` names one table for conflicts and deadletters (resync takes several). */
function oneTable(tables: string[]): string {
  if (tables.length > 1)
    throw new BrabantError(
      'CONFIG_INVALID',
      `--table takes one table here, not ${tables.length}: ${tables.join(', ')}`,
    );
  return tables[0]!;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`brabant: ${describeError(err)}`);
    process.exitCode = 1;
  },
);
