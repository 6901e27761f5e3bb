/**
 * MirrorMaker 2 (Apache Kafka's own connect-mirror, from Maven Central by mirror.pom.xml) for the
 * per-region layout with mirrored peer streams: one dedicated MirrorMaker node per region, copying
 * every other region's change topic from that region's cluster (across the link) into its own,
 * under the same name (IdentityReplicationPolicy), read_committed and with exactly-once source
 * support, so apply reads every stream from its own region's cluster. Why this is not the default:
 * docs/clusters.md.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { changeTopic } from '../../services/protocol/topics.ts';
import { copyDependencies, type Progress } from '../maven.ts';
import { type ManagedProcess, spawnManaged, waitFor, waitUntilReady, which } from '../processes.ts';
import { shutdownPlan } from '../shutdown.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');

export function mirrorVersion(): string {
  const m = /<mirror\.version>([^<]+)<\/mirror\.version>/.exec(
    readFileSync(join(HERE, 'mirror.pom.xml'), 'utf8'),
  );
  if (m === null) throw new Error('infra/kafka/mirror.pom.xml has no <mirror.version>');
  return m[1]!;
}

export function mirrorLibsDir(): string {
  return join(ROOT, '.cache', 'kafka', `mirror-${mirrorVersion()}`, 'libs');
}

export async function ensureMirrorJars(progress: Progress = () => {}): Promise<string> {
  const libs = mirrorLibsDir();
  await copyDependencies({
    what: `Apache Kafka MirrorMaker 2 (connect-mirror ${mirrorVersion()}) jars`,
    pom: join(HERE, 'mirror.pom.xml'),
    dir: libs,
    expect: /^connect-mirror-\d/,
    progress,
  });
  return libs;
}

export interface MirrorSpec {
  /** The region whose cluster it writes into. */
  region: string;
  /** Its cluster, as its region reaches it. */
  brokers: string[];
  /** Every other region: its cluster as this region reaches it (across the link). */
  sources: { region: string; brokers: string[] }[];
  /** Port of its internal REST server (dedicated mode needs one for exactly-once). */
  restPort: number;
  propertiesFile: string;
  logFile: string;
  libsDir: string;
}

/** mm2.properties of one region's MirrorMaker node (pure). */
export function mirrorProperties(s: MirrorSpec): string {
  const lines = [
    "# MirrorMaker 2 of the local stack (infra/kafka/mirror.ts): other regions' change topics into this one",
    `clusters = ${[s.region, ...s.sources.map((x) => x.region)].join(', ')}`,
    `${s.region}.bootstrap.servers = ${s.brokers.join(',')}`,
    // the same topic names in every cluster: apply reads brabant.<region>.changes wherever it is
    'replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy',
    // exactly once into this cluster (KIP-618): records and source offsets in one transaction
    `${s.region}.exactly.once.source.support = enabled`,
    'dedicated.mode.enable.internal.rest = true',
    `listeners = http://127.0.0.1:${s.restPort}`,
    `${s.region}.listeners = http://127.0.0.1:${s.restPort}`,
    // single-broker clusters
    'replication.factor = 1',
    'offset-syncs.topic.replication.factor = 1',
    'heartbeats.topic.replication.factor = 1',
    'checkpoints.topic.replication.factor = 1',
    'offset.storage.replication.factor = 1',
    'status.storage.replication.factor = 1',
    'config.storage.replication.factor = 1',
    // only the change topics: no consumer-group offsets, ACLs or heartbeats to carry
    'emit.checkpoints.enabled = false',
    'sync.group.offsets.enabled = false',
    'emit.heartbeats.enabled = false',
    'sync.topic.acls.enabled = false',
    'refresh.topics.interval.seconds = 5',
    // its bookkeeping stays in this region: nothing is written across the link
    'offset-syncs.topic.location = target',
    'tasks.max = 1',
  ];
  for (const src of s.sources) {
    lines.push(
      `${src.region}.bootstrap.servers = ${src.brokers.join(',')}`,
      // a capture's aborted Kafka transactions are never copied
      `${src.region}.consumer.isolation.level = read_committed`,
      `${src.region}->${s.region}.enabled = true`,
      `${src.region}->${s.region}.topics = ${changeTopic(src.region).replace(/\./g, '\\\\.')}`,
      `${s.region}->${src.region}.enabled = false`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export async function startMirror(spec: MirrorSpec, timeoutMs = 120_000): Promise<ManagedProcess> {
  mkdirSync(dirname(spec.propertiesFile), { recursive: true });
  writeFileSync(spec.propertiesFile, mirrorProperties(spec));
  const java =
    process.env.JAVA_HOME && existsSync(join(process.env.JAVA_HOME, 'bin', 'java'))
      ? join(process.env.JAVA_HOME, 'bin', 'java')
      : (which('java') ?? 'java');
  const proc = spawnManaged({
    name: `mirror-${spec.region}`,
    command: java,
    args: [
      '-Xms64m',
      '-Xmx384m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      `-Dlog4j2.configurationFile=${join(HERE, 'log4j2.properties')}`,
      '-cp',
      `${spec.libsDir}/*`,
      'org.apache.kafka.connect.mirror.MirrorMaker',
      spec.propertiesFile,
      '--clusters',
      spec.region,
    ],
    logFile: spec.logFile,
    stopPlan: shutdownPlan('kafka'),
  });
  await waitUntilReady(proc, () =>
    waitFor(
      async () => /Kafka MirrorMaker started|MirrorMaker started/i.test(readFileSync(spec.logFile, 'utf8')),
      { what: `MirrorMaker 2 into ${spec.region}`, timeoutMs, process: proc, intervalMs: 500 },
    ),
  );
  return proc;
}
