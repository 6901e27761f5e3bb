/**
 * Where apply reads each change topic (pure configuration): its own cluster's topics and each
 * peer region's across the link; topics of one cluster share its consumer.
 */
import { changeTopic } from '../protocol/topics.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { ApplyConfig } from './session.ts';

/** The change topics apply reads from one Kafka cluster. */
export interface ClusterSource {
  brokers: string[];
  topics: string[];
}

/**
 * Where each change topic is read: BRABANT_APPLY_TOPICS (or the regions' topics) on the local
 * cluster, and each BRABANT_APPLY_SOURCES entry (`topic=host:port|host:port`) on its own; topics
 * of one cluster share its consumer.
 */
export function applySources(c: ApplyConfig): ClusterSource[] {
  const local = c.topics.length > 0 ? c.topics : c.regions.map(changeTopic);
  const byCluster = new Map<string, ClusterSource>();
  const add = (brokers: string[], topic: string) => {
    const key = [...brokers].sort().join(',');
    const src = byCluster.get(key) ?? { brokers, topics: [] };
    if (!src.topics.includes(topic)) src.topics.push(topic);
    byCluster.set(key, src);
  };
  for (const t of local) add(c.kafkaBrokers, t);
  for (const entry of c.sources) {
    const eq = entry.indexOf('=');
    const brokers =
      eq > 0
        ? entry
            .slice(eq + 1)
            .split('|')
            .filter((b) => b.trim() !== '')
        : [];
    if (eq <= 0 || brokers.length === 0)
      throw new BrabantError(
        'CONFIG_INVALID',
        `BRABANT_APPLY_SOURCES entry '${entry}' must look like topic=host:port|host:port (e.g. brabant.wallonie.changes=10.0.2.1:9092|10.0.2.2:9092)`,
      );
    add(brokers, entry.slice(0, eq));
  }
  if (byCluster.size === 0) {
    throw new BrabantError(
      'CONFIG_INVALID',
      'apply has nothing to consume: set BRABANT_APPLY_REGIONS (e.g. vlaanderen,wallonie), BRABANT_APPLY_TOPICS or BRABANT_APPLY_SOURCES',
    );
  }
  return [...byCluster.values()];
}
