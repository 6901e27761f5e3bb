/** `brabant dashboard`: serves the live page (services/dashboard) until Ctrl-C. */
import { serveDashboard } from '../dashboard/server.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Topology } from '../runtime/topology.ts';
import { say } from './nodes.ts';

export async function dashboard(o: { topology: Topology; port: number }): Promise<number> {
  say(`collecting the status of ${o.topology.file} …`);
  const d = await serveDashboard({
    topology: o.topology,
    port: o.port,
    onError: (m) => say(`dashboard: ${m}`),
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE')
      throw new BrabantError(
        'PORT_IN_USE',
        `port ${o.port} is taken: pick another with --port N (0: any free port)`,
      );
    throw err;
  });
  say(`dashboard at ${d.url} (loopback only; Ctrl-C stops it)`);
  await new Promise<void>((done) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => done());
  });
  await d.stop();
  return 0;
}
