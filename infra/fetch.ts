/** Fetches the Kafka jars and builds the schema registry ahead of time (infra/setup.sh calls it). */
import { describeError } from '../services/runtime/errors.ts';
import { ensureKafkaJars } from './kafka/kafka.ts';
import { ensureRegistryBuilt } from './registry/registry.ts';

const progress = (m: string) => console.log(`[setup] ${m}`);
try {
  await ensureKafkaJars(progress);
  await ensureRegistryBuilt(progress);
} catch (err) {
  console.error(`[setup] ${describeError(err)}`);
  process.exit(1);
}
