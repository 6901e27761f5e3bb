/** Capture's options, declared once (see docs/configuration.md, generated from these). */
import { CHANGE_TOPIC_DEFAULTS } from '../protocol/topics.ts';
import {
  bool,
  type ConfigOf,
  endpointOptions,
  int,
  list,
  nodeServiceOptions,
  str,
} from '../runtime/config.ts';
import { securityOptions } from '../runtime/security.ts';
import type { TopologyBinding } from '../runtime/service-config.ts';
import { nodeOf, regionOf } from '../runtime/topology.ts';
import { serviceSecurity } from '../runtime/topology-security.ts';

export const captureConfig = {
  ...nodeServiceOptions(),
  region: str({ env: 'BRABANT_REGION', description: 'Region of this node (e.g. vlaanderen)' }),
  registryPrimaryUrl: str({
    env: 'BRABANT_REGISTRY_PRIMARY_URL',
    description:
      'Registry new schemas are registered in when BRABANT_REGISTRY_URL is a read-only follower (the primary region’s); empty means BRABANT_REGISTRY_URL',
    default: '',
  }),
  topic: str({
    env: 'BRABANT_CAPTURE_TOPIC',
    description: 'Change topic of the region; empty means brabant.<region>.changes',
    default: '',
  }),
  tables: list({
    env: 'BRABANT_CAPTURE_TABLES',
    description:
      'Tables to replicate (schema.table, comma-separated); empty means all tables of the database',
    default: [],
  }),
  slot: str({
    env: 'BRABANT_CAPTURE_SLOT',
    description: 'Logical replication slot; empty means brabant_<node id>',
    default: '',
  }),
  publication: str({
    env: 'BRABANT_CAPTURE_PUBLICATION',
    description: 'Publication of the replicated tables; empty means brabant_<node id>',
    default: '',
  }),
  recreateSlot: bool({
    env: 'BRABANT_CAPTURE_RECREATE_SLOT',
    description:
      'Create the slot again although Kafka already holds events of this node (changes in between are lost)',
    default: false,
  }),
  batchEvents: int({
    env: 'BRABANT_CAPTURE_BATCH_EVENTS',
    description: 'Most events in one Kafka transaction',
    default: 5000,
    min: 1,
    max: 1_000_000,
  }),
  batchBytes: int({
    env: 'BRABANT_CAPTURE_BATCH_BYTES',
    description: 'Most bytes in one Kafka transaction (bounds memory)',
    default: 4 * 1024 * 1024,
    min: 1024,
    max: 512 * 1024 * 1024,
  }),
  batchMs: int({
    env: 'BRABANT_CAPTURE_BATCH_MS',
    description: 'Longest time an event waits for its batch to fill',
    default: 20,
    min: 1,
    max: 60_000,
  }),
  heartbeatMs: int({
    env: 'BRABANT_CAPTURE_HEARTBEAT_MS',
    description: 'Period of heartbeat events (lag measurable when idle; the slot advances); 0 turns them off',
    default: 1000,
    min: 0,
    max: 3_600_000,
  }),
  maxMessageBytes: int({
    env: 'BRABANT_CAPTURE_MAX_MESSAGE_BYTES',
    description:
      'max.message.bytes of the change topic; a larger event is sent as several Chunk records of at most this size',
    default: CHANGE_TOPIC_DEFAULTS.maxMessageBytes,
    min: 1024,
    max: 1024 * 1024 * 1024,
  }),
  partitions: int({
    env: 'BRABANT_CAPTURE_TOPIC_PARTITIONS',
    description: 'Partitions of a change topic capture creates',
    default: CHANGE_TOPIC_DEFAULTS.partitions,
    min: 1,
    max: 10_000,
  }),
  retentionMs: int({
    env: 'BRABANT_CAPTURE_RETENTION_MS',
    description: 'retention.ms of a change topic capture creates (how long a region may stay away)',
    default: CHANGE_TOPIC_DEFAULTS.retentionMs,
    min: 60_000,
    max: Number.MAX_SAFE_INTEGER,
  }),
  sequenceIndex: int({
    env: 'BRABANT_SEQUENCE_INDEX',
    description:
      'This node’s place among the nodes for sequences, unique in the cluster (0 to BRABANT_SEQUENCE_STEP - 1): its sequences hand out only values congruent to it, so two nodes never hand out the same id; -1 leaves sequences alone',
    default: -1,
    min: -1,
    max: 1023,
  }),
  sequenceStep: int({
    env: 'BRABANT_SEQUENCE_STEP',
    description:
      'The step of every replicated sequence: the most nodes the cluster can ever have; the same on every node (a serial int column then has 2^31 / step ids per node)',
    default: 16,
    min: 1,
    max: 1024,
  }),
  walWarnBytes: int({
    env: 'BRABANT_CAPTURE_WAL_WARN_BYTES',
    description:
      'Warn (log SLOT_WAL_RETAINED, brabant_capture_slot_wal_warning=1) once the slot holds back this much WAL, e.g. while Kafka is away; 0 turns it off. Set it well below max_slot_wal_keep_size (docs/capture.md)',
    default: 1024 * 1024 * 1024,
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
  }),
  slotWatchMs: int({
    env: 'BRABANT_CAPTURE_SLOT_WATCH_MS',
    description: 'How often the WAL the slot retains is read (brabant_capture_slot_retained_wal_bytes)',
    default: 5000,
    min: 100,
    max: 600_000,
  }),
  retryMaxMs: int({
    env: 'BRABANT_CAPTURE_RETRY_MAX_MS',
    description: 'Longest wait between attempts while Kafka, the registry or the node is unreachable',
    default: 30_000,
    min: 100,
    max: 600_000,
  }),
  ...securityOptions(),
  ...endpointOptions(9401),
};

/** Capture's options from a topology file: its node, the node's region, cluster and registries. */
export const captureTopology: TopologyBinding<typeof captureConfig> = {
  target: 'node',
  options(t, nodeId): Partial<ConfigOf<typeof captureConfig>> {
    const n = nodeOf(t, nodeId);
    const r = regionOf(t, n.region);
    return {
      nodeId,
      region: r.name,
      ...serviceSecurity(t.security, 'capture', n),
      kafkaBrokers: r.kafka,
      registryUrl: r.registry,
      ...(r.registryPrimary === r.registry ? {} : { registryPrimaryUrl: r.registryPrimary }),
      ...(n.captureMetricsPort === undefined ? {} : { metricsPort: n.captureMetricsPort }),
    };
  },
};
