/** Apply's options, declared once (docs/configuration.md is generated from them). */
import { changeTopic } from '../protocol/topics.ts';
import { type ConfigOf, endpointOptions, int, list, nodeServiceOptions, str } from '../runtime/config.ts';
import { securityOptions } from '../runtime/security.ts';
import type { TopologyBinding } from '../runtime/service-config.ts';
import { nodeOf, regionOf, sameCluster } from '../runtime/topology.ts';
import { serviceSecurity } from '../runtime/topology-security.ts';

export const applyConfig = {
  ...nodeServiceOptions(),
  region: str({
    env: 'BRABANT_REGION',
    description:
      'Region of this node: its own change topic (brabant.<region>.changes) is where apply looks for own changes a restored database lacks; empty means every topic it reads',
    default: '',
  }),
  regions: list({
    env: 'BRABANT_APPLY_REGIONS',
    description:
      'Regions whose change topics (brabant.<region>.changes) this node applies; include its own region for its peers there',
    default: [],
  }),
  topics: list({
    env: 'BRABANT_APPLY_TOPICS',
    description: 'Change topics to apply, instead of deriving them from BRABANT_APPLY_REGIONS',
    default: [],
  }),
  sources: list({
    env: 'BRABANT_APPLY_SOURCES',
    description:
      'Change topics read from another Kafka cluster than BRABANT_KAFKA_BROKERS (a peer region’s, across the link), as topic=host:port|host:port entries; each cluster gets a consumer of its own',
    default: [],
  }),
  groupId: str({
    env: 'BRABANT_APPLY_GROUP',
    description: 'Kafka consumer group; empty means brabant-apply-<node id>',
    default: '',
  }),
  chunkRows: int({
    env: 'BRABANT_APPLY_CHUNK_ROWS',
    description:
      'Rows of one source transaction applied per round trip (and chunk size of large transactions); also the events of a run applied while the next are decoded',
    default: 2000,
    min: 1,
    max: 1_000_000,
  }),
  groupTransactions: int({
    env: 'BRABANT_APPLY_GROUP_TRANSACTIONS',
    description:
      'Most small source transactions applied in one round trip (each still its own local transaction); 1 turns grouping off',
    default: 500,
    min: 1,
    max: 100_000,
  }),
  offsetCommitMs: int({
    env: 'BRABANT_APPLY_OFFSET_COMMIT_MS',
    description:
      'Kafka group offsets are committed at most this often per partition (and at stop); a restart reads again what came after, and skips it by the origin progress',
    default: 1000,
    min: 0,
    max: 600_000,
  }),
  tombstoneMarginMs: int({
    env: 'BRABANT_APPLY_TOMBSTONE_MARGIN_MS',
    description: 'Tombstones are kept this long after every peer applied past them (clock skew margin)',
    default: 600_000,
    min: 0,
    max: 30 * 24 * 3600 * 1000,
  }),
  pruneIntervalMs: int({
    env: 'BRABANT_APPLY_PRUNE_INTERVAL_MS',
    description: 'How often tombstones that every peer has applied past are removed',
    default: 60_000,
    min: 100,
    max: 24 * 3600 * 1000,
  }),
  deadLetterAt: list({
    env: 'BRABANT_APPLY_DEAD_LETTER_AT',
    description:
      'Records (topic/partition@offset) to send to the dead-letter topic instead of waiting for their schema: only for a record known to be garbage, whose stream is paused on SCHEMA_UNAVAILABLE',
    default: [],
  }),
  retryMaxMs: int({
    env: 'BRABANT_APPLY_RETRY_MAX_MS',
    description: 'Longest wait between attempts while Kafka, the registry or the node is unreachable',
    default: 30_000,
    min: 100,
    max: 600_000,
  }),
  ...securityOptions(),
  ...endpointOptions(9402),
};

/**
 * Apply's options from a topology file. The change topics on its own region's cluster (its own
 * region's, every region's in the shared layout, and the mirrored ones with `peerStreams: mirror`)
 * are read there; with `peerStreams: direct` each peer region's topic is read from that region's
 * cluster, at the address it gives other regions (kafkaFromPeers).
 */
export const applyTopology: TopologyBinding<typeof applyConfig> = {
  target: 'node',
  options(t, nodeId): Partial<ConfigOf<typeof applyConfig>> {
    const n = nodeOf(t, nodeId);
    const own = regionOf(t, n.region);
    const local: string[] = [];
    const sources: string[] = [];
    for (const r of t.regions) {
      if (r === own || sameCluster(r, own) || t.peerStreams === 'mirror') local.push(r.name);
      else sources.push(`${changeTopic(r.name)}=${r.kafkaFromPeers.join('|')}`);
    }
    return {
      nodeId,
      region: n.region,
      ...serviceSecurity(t.security, 'apply', n),
      kafkaBrokers: own.kafka,
      registryUrl: own.registry,
      regions: local,
      sources,
      ...(n.applyMetricsPort === undefined ? {} : { metricsPort: n.applyMetricsPort }),
    };
  },
};
