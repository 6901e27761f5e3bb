/** `brabant up` and `brabant down`: the local stack for people trying Brabant out. */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { type StackInfo, startStack, stopRecorded, type Topology } from '../../infra/stack.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { controlConfig } from './config.ts';

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
  reuse: boolean;
  detach: boolean;
}): Promise<number> {
  const stack = await startStack(
    { ...DEMO_TOPOLOGY, kafka: opts.kafka },
    { workDir: opts.config.home, basePort: opts.config.basePort, reuse: opts.reuse, onProgress: progress },
  );
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
      progress(`${signal}: stopping the stack`);
      stack.stop().then(done, done);
    };
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
  if (opts.purge) {
    rmSync(dir, { recursive: true, force: true });
    progress(`removed ${dir}`);
  } else if (stopped === 0) {
    throw new BrabantError('STACK_NOT_RUNNING', `no running stack was found in ${dir}; nothing to stop`);
  }
  progress(`stopped ${stopped} process(es)`);
  return 0;
}

export function describeStack(stack: StackInfo): string {
  const lines: string[] = [];
  for (const r of stack.regions) {
    lines.push(`region ${r.name}`);
    lines.push(`  kafka brokers: ${r.kafkaBrokers.join(',')}`);
    for (const n of r.nodes) lines.push(`  node ${n.id}: psql '${n.url}'`);
  }
  lines.push(`schema registry: ${stack.registryUrl}`);
  lines.push(`logs: ${stack.workDir}/logs`);
  return lines.join('\n');
}
