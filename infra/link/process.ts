/** Starting the link process (main.ts) of the local stack and waiting until its relays listen. */
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ManagedProcess, spawnManaged, waitFor, waitUntilReady } from '../processes.ts';
import { shutdownPlan } from '../shutdown.ts';
import type { LinkSpec } from './main.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

export async function startLink(spec: LinkSpec): Promise<{ process: ManagedProcess; url: string }> {
  writeFileSync(spec.specFile, `${JSON.stringify(spec, null, 2)}\n`);
  const proc = spawnManaged({
    name: 'link',
    command: process.execPath,
    args: ['--import', 'tsx', join(HERE, 'main.ts'), spec.specFile],
    cwd: resolve(HERE, '../..'),
    logFile: spec.logFile,
    stopPlan: shutdownPlan('link'),
  });
  const url = `http://127.0.0.1:${spec.controlPort}`;
  await waitUntilReady(proc, () =>
    waitFor(async () => (await fetch(`${url}/status`, { signal: AbortSignal.timeout(1000) })).ok, {
      what: `the link between regions (control port ${spec.controlPort})`,
      timeoutMs: 30_000,
      process: proc,
      intervalMs: 100,
    }),
  );
  return { process: proc, url };
}
