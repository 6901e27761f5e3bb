/**
 * `brabant` CLI. Thin: parses arguments, loads config once, and calls the command modules.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../runtime/config.ts';
import { describeError } from '../runtime/errors.ts';
import { readTopology, type Topology } from '../runtime/topology.ts';
import { controlConfig } from './config.ts';
import { configurationDoc } from './config-docs.ts';
import { ddl } from './ddl-commands.ts';
import { demo } from './demo.ts';
import { link } from './link-commands.ts';
import { node } from './membership/commands.ts';
import { policy } from './policy-commands.ts';
import { maintenance, switchover } from './router-commands.ts';
import { down, restart, up } from './stack-commands.ts';
import { start, stop, topologyFile } from './start-commands.ts';

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

const USAGE = `usage: brabant <command> [options]

commands:
  demo   start the two-region stack with capture and apply on each node, write in both regions at
         once (with conflicting updates), show progress, and show that both end identical
           --seconds N      how long to write (default 20)
           --kafka MODE     shared (default) or per-region (a Kafka cluster per region)
           --cut-link S     per-region: cut the link between the regions for S seconds in the
                            middle of the writes (both keep writing; they agree after the heal)
           --keep           leave the stack running afterwards
  up     start the local two-region stack (Kafka, PostgreSQL nodes vl-1 and wa-1, schema registry)
           --base-port N    first loopback port (default BRABANT_BASE_PORT or 19090)
           --kafka MODE     shared (one cluster) or per-region (one cluster per region); default shared
           --peer-streams M per-region: apply reads the other region's cluster across the link
                            (direct, the default) or a local MirrorMaker 2 copy (mirror)
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
      return up({ config, kafka, peerStreams, reuse: values.reuse, detach: values.detach });
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
      return demo({ config, seconds, keep: values.keep, kafka, cutLinkSeconds });
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
    case 'node':
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`brabant: ${describeError(err)}`);
    process.exitCode = 1;
  },
);
