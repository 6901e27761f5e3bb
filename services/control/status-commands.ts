/**
 * `brabant status [--json] [--watch]`: the state of everything a topology names, the verdict
 * line first, and an exit code scripts can use (0 healthy, 1 degraded, 2 down, 3 status could not
 * run). Run against the local stack it finds the stack's topology by itself (`brabant up`, or the
 * demo's with `brabant demo --keep`).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TOPOLOGY_FILE } from '../../infra/stack-topology.ts';
import { describeError } from '../runtime/errors.ts';
import { TOPOLOGY_ENV } from '../runtime/service-config.ts';
import { readTopology, type Topology } from '../runtime/topology.ts';
import { topologyFile } from './start-commands.ts';
import { collectStatus } from './status-collect.ts';
import { DEFAULT_THRESHOLDS, exitCodeOf, renderStatus } from './status-model.ts';

/** The demo's stack lives in `<home>/demo` (services/control/demo.ts). */
export const DEMO_FOLDER = 'demo';

/**
 * The topology an operator command works on: --topology, BRABANT_TOPOLOGY, the local stack's,
 * or, when only the demo left one running (`--keep`), the demo's.
 */
export function operatorTopology(flag: string | undefined, home: string, env = process.env): Topology {
  if (flag === undefined && env[TOPOLOGY_ENV] === undefined) {
    const demo = join(resolve(home), DEMO_FOLDER, TOPOLOGY_FILE);
    if (!existsSync(join(resolve(home), TOPOLOGY_FILE)) && existsSync(demo)) return readTopology(demo);
  }
  return readTopology(topologyFile(flag, home, env));
}

export async function status(o: {
  home: string;
  topology: string | undefined;
  json: boolean;
  watch: boolean;
  maxLagSeconds: number | undefined;
}): Promise<number> {
  let t: Topology;
  try {
    t = operatorTopology(o.topology, o.home);
  } catch (err) {
    console.error(`brabant status: ${describeError(err)}`);
    return 3;
  }
  const thresholds = {
    ...DEFAULT_THRESHOLDS,
    ...(o.maxLagSeconds === undefined ? {} : { maxLagSeconds: o.maxLagSeconds }),
  };
  for (;;) {
    const report = await collectStatus(t, { thresholds });
    const text = o.json ? JSON.stringify(report, null, 2) : renderStatus(report);
    if (!o.watch) {
      console.log(text);
      return exitCodeOf(report.verdict.state);
    }
    // clear the screen and home the cursor: one screen that changes in place
    process.stdout.write(`\x1b[2J\x1b[H${text}\n\n(every 5 s; Ctrl-C to stop)\n`);
    await new Promise((r) => setTimeout(r, 5000));
  }
}
