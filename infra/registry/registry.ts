/**
 * The local schema registry: Apicurio Registry 2.4.2 (its Confluent-compatible ccompat API),
 * built once from Maven Central by pom.xml beside this file and run as a JVM on a loopback port.
 * Its storage is Apicurio's SQL storage on PostgreSQL (registry-db.ts), so schema ids survive a
 * restart of the registry or of the whole stack; why this storage and not KafkaSQL:
 * docs/registry.md. Brabant only speaks the Confluent REST API to it, so any Confluent-compatible
 * registry works instead (BRABANT_REGISTRY_URL).
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { registryRequest } from '../../services/protocol/registry-http.ts';
import { BrabantError } from '../../services/runtime/errors.ts';
import { type ClientTls, readSecretFile } from '../../services/runtime/security.ts';
import { type Progress, requireMaven, runMaven } from '../maven.ts';
import { type ManagedProcess, spawnManaged, waitFor, waitUntilReady, which } from '../processes.ts';
import { shutdownPlan } from '../shutdown.ts';
import type { RegistryStorage } from './registry-db.ts';

/** How the stack's own tools reach a secured registry: its CA, and the services' client certificate. */
export function registryClientTls(
  s: Pick<RegistrySecuritySpec, 'ca' | 'clientCert' | 'clientKey'>,
): ClientTls {
  return {
    ca: readFileSync(s.ca, 'utf8'),
    cert: readFileSync(s.clientCert, 'utf8'),
    key: readFileSync(s.clientKey, 'utf8'),
  };
}

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const CACHE = join(ROOT, '.cache', 'registry');

/** Path of the Confluent API under the registry's root URL. */
export const CCOMPAT_PATH = '/apis/ccompat/v7';

/**
 * Quarkus fixes the datasource kind when it builds the application, and Apicurio's jar sets
 * `%prod.…db-kind=h2`; a profiled key outranks an unprofiled one, so ours carries the profile too.
 */
const BUILD_FLAGS = [
  '-Dquarkus.package.type=fast-jar',
  '-D%prod.quarkus.datasource.db-kind=postgresql',
  // Quarkus 2.16 fixes client-auth when it builds: HTTPS (the secured stack's) then takes only
  // clients with a certificate of its truststore; plain HTTP (--insecure) is not affected
  '-Dquarkus.http.ssl.client-auth=required',
];

export interface RegistrySpec {
  port: number;
  logFile: string;
  /** Working folder: ./config/application.properties and the JVM's temporary files. */
  runDir: string;
  storage: RegistryStorage;
  /** A follower registry (on a standby): the relay port its region reaches the primary registry at. */
  primaryRelayPort?: number;
  /** HTTPS only, and only clients with a certificate of the stack's CA (mutual TLS); absent: HTTP. */
  security?: RegistrySecuritySpec;
}

export interface RegistrySecuritySpec {
  cert: string;
  key: string;
  /** PKCS12 truststore of the CA client certificates are checked against, and its password's file. */
  truststore: string;
  truststorePasswordFile: string;
  /** What the stack's own check of the registry connects with. */
  ca: string;
  clientCert: string;
  clientKey: string;
}

export interface RunningRegistry {
  url: string;
  process: ManagedProcess;
}

/**
 * Folder of the build for this pom and these flags: a changed build (e.g. another storage) is
 * built anew beside the old one instead of being mistaken for it.
 */
export function registryBuildDir(): string {
  const hash = createHash('sha256');
  for (const f of ['pom.xml', 'maven-settings.xml']) hash.update(readFileSync(join(HERE, f)));
  hash.update(BUILD_FLAGS.join(' '));
  return join(CACHE, `build-${hash.digest('hex').slice(0, 12)}`);
}

/** Builds the registry once; returns the folder of its runnable quarkus-app. */
export async function ensureRegistryBuilt(progress: Progress = () => {}): Promise<string> {
  const buildDir = registryBuildDir();
  const app = join(buildDir, 'quarkus-app');
  if (existsSync(join(app, 'quarkus-run.jar'))) return app;
  requireMaven('the schema registry (Apicurio 2.4.2)');
  if (which('java') === undefined) {
    throw new BrabantError(
      'PREREQUISITE_MISSING',
      'building the schema registry needs java (17+); run `bash infra/setup.sh`',
    );
  }
  mkdirSync(buildDir, { recursive: true });
  progress(
    'building the schema registry (Apicurio 2.4.2) from Maven Central (first time only, ~215 MB, about a minute)',
  );
  await runMaven({
    what: 'the schema registry (Apicurio 2.4.2)',
    args: [
      '-f',
      join(HERE, 'pom.xml'),
      '-s',
      join(HERE, 'maven-settings.xml'),
      `-Dmaven.repo.local=${join(CACHE, 'm2')}`,
      `-Dregistry.build.dir=${buildDir}`,
      ...BUILD_FLAGS,
      'package',
    ],
    logFile: join(buildDir, 'maven.log'),
    progress,
  });
  if (!existsSync(join(app, 'quarkus-run.jar')))
    throw new BrabantError('DOWNLOAD_FAILED', `the registry build finished without ${app}/quarkus-run.jar`);
  progress('schema registry built');
  return app;
}

export async function startRegistry(
  spec: RegistrySpec & { distDir: string },
  timeoutMs = 60_000,
): Promise<RunningRegistry> {
  // Quarkus reads ./config/application.properties of its working directory.
  mkdirSync(join(spec.runDir, 'config'), { recursive: true });
  cpSync(join(HERE, 'application.properties'), join(spec.runDir, 'config', 'application.properties'));
  const sec = spec.security;
  const proc = spawnManaged({
    name: 'schema-registry',
    command: 'java',
    args: [
      '-Xmx256m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      '-Xss512k',
      ...(sec === undefined
        ? [`-Dquarkus.http.port=${spec.port}`]
        : [
            // HTTPS on the registry's port, no HTTP at all (the plain port elsewhere, refused)
            `-Dquarkus.http.ssl-port=${spec.port}`,
            `-Dquarkus.http.port=0`,
            '-Dquarkus.http.insecure-requests=disabled',
            `-Dquarkus.http.ssl.certificate.files=${sec.cert}`,
            `-Dquarkus.http.ssl.certificate.key-files=${sec.key}`,
            `-Dquarkus.http.ssl.certificate.trust-store-file=${sec.truststore}`,
            '-Dquarkus.http.ssl.certificate.trust-store-file-type=PKCS12',
          ]),
      '-Dquarkus.http.host=127.0.0.1',
      `-Djava.io.tmpdir=${spec.runDir}`,
      '-jar',
      join(spec.distDir, 'quarkus-run.jar'),
    ],
    cwd: spec.runDir,
    logFile: spec.logFile,
    // Apicurio's own variable names (application.properties); in the environment, not on the
    // command line, so that `ps` does not show a password.
    env: {
      REGISTRY_DATASOURCE_URL: spec.storage.jdbcUrl,
      REGISTRY_DATASOURCE_USERNAME: spec.storage.username,
      REGISTRY_DATASOURCE_PASSWORD:
        spec.storage.passwordFile === undefined
          ? spec.storage.password
          : readSecretFile(spec.storage.passwordFile, "the registry database's password"),
      ...(sec === undefined
        ? {}
        : {
            QUARKUS_HTTP_SSL_CERTIFICATE_TRUST_STORE_PASSWORD: readSecretFile(
              sec.truststorePasswordFile,
              "the registry's truststore password",
            ),
          }),
    },
    stopPlan: shutdownPlan('registry'),
  });
  const root = `${sec === undefined ? 'http' : 'https'}://127.0.0.1:${spec.port}`;
  const tls = sec === undefined ? undefined : registryClientTls(sec);
  await waitUntilReady(proc, () =>
    waitFor(
      async () => {
        // Ready includes the storage: the database answered and holds Apicurio's tables.
        const res = await registryRequest(`${root}/health/ready`, {
          method: 'GET',
          headers: {},
          timeoutMs: 1000,
          ...(tls === undefined ? {} : { tls }),
        });
        return res.status === 200;
      },
      { what: `schema registry on port ${spec.port}`, timeoutMs, process: proc, intervalMs: 250 },
    ),
  );
  return { url: `${root}${CCOMPAT_PATH}`, process: proc };
}
