/**
 * Apache Kafka 4.x for the local stack: broker jars fetched from Maven Central with Maven (pom.xml
 * beside this file) into a git-ignored cache, then one KRaft node (combined broker + controller)
 * per cluster, started as a plain JVM process on loopback ports.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, type KafkaConfig, logLevel, type SASLOptions } from 'kafkajs';
import { BrabantError } from '../../services/runtime/errors.ts';
import { readSecretFile } from '../../services/runtime/security.ts';
import { COMPLETE_MARKER, copyDependencies, type Progress } from '../maven.ts';
import { type ManagedProcess, spawnManaged, waitFor, waitUntilReady, which } from '../processes.ts';
import { shutdownPlan } from '../shutdown.ts';
import {
  formatScramArgs,
  type KafkaSecuritySpec,
  listenerSettings,
  securityProperties,
} from './kafka-security.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');

export function kafkaVersion(): string {
  const pom = readFileSync(join(HERE, 'pom.xml'), 'utf8');
  const m = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom);
  if (m === null) throw new Error('infra/kafka/pom.xml has no <kafka.version>');
  return m[1]!;
}

export function kafkaLibsDir(): string {
  return process.env.BRABANT_KAFKA_LIBS ?? join(ROOT, '.cache', 'kafka', kafkaVersion(), 'libs');
}

function javaPath(): string {
  const home = process.env.JAVA_HOME;
  if (home && existsSync(join(home, 'bin', 'java'))) return join(home, 'bin', 'java');
  const found = which('java');
  if (found === undefined) {
    throw new BrabantError(
      'PREREQUISITE_MISSING',
      'java was not found (Kafka runs on the JVM); install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME',
    );
  }
  return found;
}

/** Fetches the broker jars once (Maven, from Maven Central); returns the folder holding them. */
export async function ensureKafkaJars(progress: Progress = () => {}): Promise<string> {
  const libs = kafkaLibsDir();
  if (!existsSync(join(libs, COMPLETE_MARKER))) javaPath();
  await copyDependencies({
    what: `Apache Kafka ${kafkaVersion()} jars (~45 MB)`,
    pom: join(HERE, 'pom.xml'),
    dir: libs,
    expect: /^kafka_2\.13-/,
    progress,
  });
  return libs;
}

export interface KafkaNodeSpec {
  name: string;
  brokerPort: number;
  controllerPort: number;
  dataDir: string;
  logFile: string;
  libsDir: string;
  /**
   * A second listener for the other regions (per-region layout): its port, and the port it is
   * advertised at — the relay of the link between regions that forwards to it.
   */
  peer?: { port: number; advertisedPort: number };
  /** A secured node (SASL_SSL, TLS between broker and controller, ACLs); absent: plaintext. */
  security?: KafkaSecuritySpec;
}

export interface RunningKafka {
  name: string;
  bootstrap: string;
  process: ManagedProcess;
}

export function isKafkaFormatted(dataDir: string): boolean {
  return existsSync(join(dataDir, 'logs', 'meta.properties'));
}

/**
 * A KRaft cluster id: 16 random bytes, base64url without padding (Kafka's Uuid text form). It may
 * start with '-', so it is passed as --cluster-id=<id>, never as a separate argument.
 */
export function newClusterId(): string {
  return randomBytes(16).toString('base64url');
}

function writeServerProperties(spec: KafkaNodeSpec): string {
  const template = readFileSync(join(HERE, 'server.properties.template'), 'utf8');
  const sec = spec.security;
  const listeners = listenerSettings(sec !== undefined, spec.peer !== undefined);
  const values: Record<string, string> = {
    CLIENT: listeners.client,
    PROTOCOL_MAP: listeners.protocolMap,
    SECURITY:
      sec === undefined
        ? ''
        : securityProperties(
            sec,
            {
              keystorePassword: readSecretFile(sec.keystorePasswordFile, 'the keystore password'),
              adminPassword: readSecretFile(sec.adminPasswordFile, "the Kafka admin's password"),
            },
            spec.peer !== undefined,
          ),
    NODE_ID: '1',
    HOST: '127.0.0.1',
    BROKER_PORT: String(spec.brokerPort),
    CONTROLLER_PORT: String(spec.controllerPort),
    LOG_DIR: join(spec.dataDir, 'logs'),
    PEER_LISTENER: spec.peer ? `,PEER://127.0.0.1:${spec.peer.port}` : '',
    PEER_ADVERTISED: spec.peer ? `,PEER://127.0.0.1:${spec.peer.advertisedPort}` : '',
  };
  const text = template.replace(/\$\{([A-Z_]+)\}/g, (_, k: string) => {
    const v = values[k];
    if (v === undefined) throw new Error(`server.properties.template uses unknown placeholder ${k}`);
    return v;
  });
  const file = join(spec.dataDir, 'server.properties');
  // it may hold the keystore's and the admin's passwords
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

const JVM_FLAGS = [
  '-Xms128m',
  '-Xmx512m',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-Djava.awt.headless=true',
];

function runJava(args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    execFile(javaPath(), args, { maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err)
        rej(
          new BrabantError(
            'COMPONENT_START_FAILED',
            `${args.slice(-4).join(' ')} failed: ${stderr || stdout || err.message}`,
          ),
        );
      else res(stdout);
    });
  });
}

export async function startKafka(spec: KafkaNodeSpec, timeoutMs = 90_000): Promise<RunningKafka> {
  mkdirSync(spec.dataDir, { recursive: true });
  const props = writeServerProperties(spec);
  const cp = `${spec.libsDir}/*`;
  const log4j = `-Dlog4j2.configurationFile=${join(HERE, 'log4j2.properties')}`;
  if (!isKafkaFormatted(spec.dataDir)) {
    await runJava([
      '-Xmx256m',
      '-XX:TieredStopAtLevel=1',
      log4j,
      '-cp',
      cp,
      'kafka.tools.StorageTool',
      'format',
      `--cluster-id=${newClusterId()}`,
      '-c',
      props,
      ...(spec.security === undefined
        ? []
        : formatScramArgs(
            spec.security,
            readSecretFile(spec.security.adminPasswordFile, "the Kafka admin's password"),
          )),
    ]);
  }
  const proc = spawnManaged({
    name: spec.name,
    command: javaPath(),
    args: [...JVM_FLAGS, log4j, '-cp', cp, 'kafka.Kafka', props],
    logFile: spec.logFile,
    stopPlan: shutdownPlan('kafka'),
  });
  const bootstrap = `127.0.0.1:${spec.brokerPort}`;
  const secured = spec.security === undefined ? {} : adminClientSecurity(spec.security);
  await waitUntilReady(proc, () =>
    waitFor(
      async () => {
        const admin = new Kafka({
          clientId: 'brabant-ready',
          brokers: [bootstrap],
          logLevel: logLevel.NOTHING,
          retry: { retries: 0 },
          connectionTimeout: 1000,
          ...secured,
        }).admin();
        try {
          await admin.connect();
          const c = await admin.describeCluster();
          return c.brokers.length > 0 && c.controller !== null;
        } finally {
          await admin.disconnect().catch(() => {});
        }
      },
      { what: `Kafka ${spec.name} on ${bootstrap}`, timeoutMs, process: proc, intervalMs: 500 },
    ),
  );
  return { name: spec.name, bootstrap, process: proc };
}

/** kafkajs options of the stack's admin on a secured node: TLS against the stack's CA, SCRAM as the admin. */
export function adminClientSecurity(s: KafkaSecuritySpec): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  return {
    ssl: { ca: [readFileSync(s.ca, 'utf8')] },
    sasl: {
      mechanism: s.mechanism === 'SCRAM-SHA-512' ? 'scram-sha-512' : 'scram-sha-256',
      username: s.adminUser,
      password: readSecretFile(s.adminPasswordFile, "the Kafka admin's password"),
    } as SASLOptions,
  };
}
