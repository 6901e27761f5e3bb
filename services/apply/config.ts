/** Apply's options, declared once (docs/configuration.md is generated from them). */
import { endpointOptions, int, list, nodeServiceOptions, str } from '../runtime/config.ts';

export const applyConfig = {
  ...nodeServiceOptions(),
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
  groupId: str({
    env: 'BRABANT_APPLY_GROUP',
    description: 'Kafka consumer group; empty means brabant-apply-<node id>',
    default: '',
  }),
  chunkRows: int({
    env: 'BRABANT_APPLY_CHUNK_ROWS',
    description:
      'Rows of one source transaction applied per round trip (and chunk size of large transactions)',
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
  ...endpointOptions(9402),
};
