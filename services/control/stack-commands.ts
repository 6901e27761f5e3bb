/** `brabant up`, `brabant down` and `brabant restart`: the local stack for people trying Brabant out. */
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { STATE_FILE, type StackInfo, startStack, stopRecorded, type Topology } from '../../infra/stack.ts';
import { canonical, restartComponent } from '../../infra/stack-control.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import { readTopology } from '../runtime/topology.ts';
import type { controlConfig } from './config.ts';
import { initNode } from './node-init.ts';

export const DEMO_TOPOLOGY: Omit<Topology, 'kafka'> = {
  regions: [
    { name: 'vlaanderen', nodes: 1 },
    { name: 'wallonie', nodes: 1 },
  ],
};

const progress = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

export async function up(opts: {
  config: ConfigOf<typeof controlConfig>;
  kafka: Topology['kafka'];
  peerStreams?: Topology['peerStreams'];
  reuse: boolean;
  detach: boolean;
  security: 'secured' | 'insecure';
}): Promise<number> {
  const stack = await startStack(
    { ...DEMO_TOPOLOGY, kafka: opts.kafka, ...(opts.peerStreams ? { peerStreams: opts.peerStreams } : {}) },
    {
      workDir: opts.config.home,
      basePort: opts.config.basePort,
      reuse: opts.reuse,
      onProgress: progress,
      security: opts.security,
    },
  );
  try {
    await initStackNodes(stack, progress);
  } catch (err) {
    await stack.stop();
    throw err;
  }
  console.log(`\n${describeStack(stack)}`);
  if (opts.detach) {
    console.log('\nThe stack runs in the background; stop it with `brabant down`.');
    // The children are in their own process groups; stop taking them down with us.
    stack.release();
    return 0;
  }
  console.log('\nPress Ctrl-C to stop the stack.');
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      clearInterval(watch);
      progress(`${signal}: stopping the stack`);
      stack.stop().then(done, done);
    };
    // `brabant down` from another shell stops the stack and removes the state file: end too.
    const watch = setInterval(() => {
      if (existsSync(join(stack.workDir, STATE_FILE))) return;
      clearInterval(watch);
      progress('the stack was stopped from elsewhere (`brabant down`)');
      done();
    }, 1000);
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  progress('stopped');
  return 0;
}

export async function down(opts: {
  config: ConfigOf<typeof controlConfig>;
  purge: boolean;
}): Promise<number> {
  const dir = resolve(opts.config.home);
  const stopped = await stopRecorded(dir, progress);
  if (stopped === 0 && !opts.purge) {
    throw new BrabantError('STACK_NOT_RUNNING', `no running stack was found in ${dir}; nothing to stop`);
  }
  progress(`stopped ${stopped} part(s); none of their processes is left`);
  if (opts.purge) {
    rmSync(dir, { recursive: true, force: true });
    progress(`removed ${dir}`);
  }
  return 0;
}

export async function restart(opts: {
  config: ConfigOf<typeof controlConfig>;
  target: string | undefined;
}): Promise<number> {
  if (opts.target === undefined) {
    throw new BrabantError(
      'CONFIG_INVALID',
      'say what to restart: `brabant restart kafka`, `brabant restart registry` or `brabant restart NODE` (e.g. vl-1)',
    );
  }
  const done = await restartComponent(canonical(opts.config.home), opts.target, progress);
  for (const r of done) progress(`restarted ${r.name}: pid ${r.oldPid} → ${r.newPid}`);
  return 0;
}

/**
 * A secured stack's nodes set up as `brabant node init` does (roles, Kafka users and ACLs), in
 * `database` (default: the nodes' own, postgres), so that its services run as their own roles;
 * apply a member of `ddlRoles` (roles that own application tables and run their DDL).
 */
export async function initStackNodes(
  stack: StackInfo,
  say: (m: string) => void,
  database?: string,
  ddlRoles?: string[],
): Promise<void> {
  if (stack.security === undefined || stack.topologyFile === undefined) return;
  const topology = readTopology(stack.topologyFile);
  for (const n of topology.nodes)
    await initNode({
      topology,
      nodeId: n.id,
      say,
      ...(database === undefined ? {} : { database }),
      ...(ddlRoles === undefined ? {} : { ddlRoles }),
    });
}

export function describeStack(stack: StackInfo): string {
  const lines: string[] = [];
  for (const r of stack.regions) {
    lines.push(`region ${r.name}`);
    lines.push(`  kafka brokers: ${r.kafkaBrokers.join(',')}`);
    if (r.kafkaFromPeers.join() !== r.kafkaBrokers.join())
      lines.push(`  kafka for the other regions (through the link): ${r.kafkaFromPeers.join(',')}`);
    if (r.registryUrl !== stack.registryUrl)
      lines.push(`  schema registry (follower, on a standby of registry-db): ${r.registryUrl}`);
    for (const n of r.nodes) lines.push(`  node ${n.id}: psql '${n.url}'`);
  }
  lines.push(`schema registry: ${stack.registryUrl}`);
  if (stack.linkUrl !== undefined)
    lines.push(
      `link between the regions: ${stack.linkUrl}/status (\`brabant link cut\`, \`brabant link heal\`)`,
    );
  if (stack.topologyFile !== undefined)
    lines.push(`topology: ${stack.topologyFile} (\`brabant start\` runs capture and apply of every node)`);
  if (stack.security !== undefined)
    lines.push(
      `security: TLS and authentication on every link; CA ${stack.security.ca}, passwords in ${stack.security.secrets} (the superuser's: ${stack.security.adminPasswordFile}); \`brabant up --insecure\` for plaintext`,
    );
  else lines.push('security: none (--insecure): plaintext, no passwords');
  lines.push(`logs: ${stack.workDir}/logs`);
  return lines.join('\n');
}
