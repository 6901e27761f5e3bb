/**
 * The local schema registry: Apicurio Registry 2.4.2 (its Confluent-compatible ccompat API),
 * built once from Maven Central by pom.xml beside this file and run as a JVM on a loopback port.
 * Brabant only speaks the Confluent REST API to it, so any Confluent-compatible registry works.
 */
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BrabantError } from '../../services/runtime/errors.ts';
import { runMaven } from '../maven.ts';
import { type ManagedProcess, spawnManaged, waitFor, waitUntilReady, which } from '../processes.ts';
import { shutdownPlan } from '../shutdown.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const CACHE = join(ROOT, '.cache', 'registry');

/** Path of the Confluent API under the registry's root URL. */
export const CCOMPAT_PATH = '/apis/ccompat/v7';

export interface RunningRegistry {
  url: string;
  process: ManagedProcess;
}

function jarPath(): string {
  return join(CACHE, 'target', 'quarkus-app', 'quarkus-run.jar');
}

/** Builds the registry once; returns the folder of its runnable quarkus-app. */
export async function ensureRegistryBuilt(progress: (m: string) => void = () => {}): Promise<string> {
  if (existsSync(jarPath())) return dirname(jarPath());
  if (which('mvn') === undefined || which('java') === undefined) {
    throw new BrabantError(
      'PREREQUISITE_MISSING',
      'building the schema registry needs java (17+) and mvn; run `bash infra/setup.sh`',
    );
  }
  mkdirSync(CACHE, { recursive: true });
  progress(
    'building the schema registry (Apicurio 2.4.2) from Maven Central (first time only, ~210 MB, about a minute)',
  );
  await runMaven({
    what: 'the schema registry (Apicurio 2.4.2)',
    args: [
      '-f',
      join(HERE, 'pom.xml'),
      '-s',
      join(HERE, 'maven-settings.xml'),
      `-Dmaven.repo.local=${join(CACHE, 'm2')}`,
      '-Dquarkus.package.type=fast-jar',
      'package',
    ],
    logFile: join(CACHE, 'maven.log'),
    progress,
  });
  if (!existsSync(jarPath()))
    throw new BrabantError('DOWNLOAD_FAILED', `the registry build finished without ${jarPath()}`);
  progress('schema registry built');
  return dirname(jarPath());
}

export async function startRegistry(
  spec: { port: number; distDir: string; logFile: string; workDir?: string },
  timeoutMs = 60_000,
): Promise<RunningRegistry> {
  // Quarkus reads ./config/application.properties of its working directory.
  const run = spec.workDir ?? join(dirname(spec.logFile), `registry-${spec.port}`);
  mkdirSync(join(run, 'config'), { recursive: true });
  cpSync(join(HERE, 'application.properties'), join(run, 'config', 'application.properties'));
  const proc = spawnManaged({
    name: 'schema-registry',
    command: 'java',
    args: [
      '-Xmx256m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      '-Xss512k',
      `-Dquarkus.http.port=${spec.port}`,
      '-Dquarkus.http.host=127.0.0.1',
      `-Djava.io.tmpdir=${run}`,
      '-jar',
      join(spec.distDir, 'quarkus-run.jar'),
    ],
    cwd: run,
    logFile: spec.logFile,
    stopPlan: shutdownPlan('registry'),
  });
  const root = `http://127.0.0.1:${spec.port}`;
  await waitUntilReady(proc, () =>
    waitFor(
      async () => {
        const res = await fetch(`${root}/health/ready`, { signal: AbortSignal.timeout(1000) });
        return res.ok;
      },
      { what: `schema registry on port ${spec.port}`, timeoutMs, process: proc, intervalMs: 250 },
    ),
  );
  return { url: `${root}${CCOMPAT_PATH}`, process: proc };
}
