/** Fetches the Kafka jars (the brokers' and MirrorMaker 2's), builds the schema registry and fetches PostgreSQL 17 ahead of time (infra/setup.sh calls it). */
import { describeError } from '../services/runtime/errors.ts';
import { ensureKafkaJars } from './kafka/kafka.ts';
import { ensureMirrorJars } from './kafka/mirror.ts';
import { ensureKafkaTools } from './kafka/scram-users.ts';
import { ensureMajor } from './postgres/majors.ts';
import { ensureRegistryBuilt } from './registry/registry.ts';

const progress = (m: string) => console.log(`[setup] ${m}`);
try {
  await ensureKafkaJars(progress);
  // MirrorMaker 2, for the per-region layout with mirrored peer streams (docs/clusters.md)
  await ensureMirrorJars(progress);
  // kafka-configs, for the secured stack's SCRAM users (brabant node init)
  await ensureKafkaTools(progress);
  await ensureRegistryBuilt(progress);
  // PostgreSQL 17 server programs, for the mixed-version and major-upgrade tests (docs/nodes.md)
  ensureMajor(17, progress);
} catch (err) {
  console.error(`[setup] ${describeError(err)}`);
  process.exit(1);
}
