/** Apply's Prometheus metrics, declared once. */
import { MetricsRegistry } from '../runtime/metrics.ts';

export function applyMetrics(registry = new MetricsRegistry()) {
  return {
    registry,
    rows: registry.counter(
      'brabant_apply_rows_total',
      'Row changes handled, by origin and action (insert, update, delete, tombstone, skip)',
    ),
    transactions: registry.counter(
      'brabant_apply_transactions_total',
      'Source transactions applied, by origin',
    ),
    // grows by itself while nothing arrives: a stalled stream shows as lag, not as its last value
    lagSeconds: registry.ageGauge(
      'brabant_apply_lag_seconds',
      'Now minus the source commit time of the newest transaction or heartbeat applied, by origin (grows while nothing arrives)',
    ),
    appliedLsn: registry.gauge(
      'brabant_apply_applied_lsn',
      'Source commit LSN of the last transaction applied, by origin',
    ),
    collisionRetries: registry.counter(
      'brabant_apply_collision_retries_total',
      'Source transactions applied again from their start after colliding with a concurrent local write (unique violation on the key, deadlock), by origin',
    ),
    fastPathMisses: registry.counter(
      'brabant_apply_fast_path_misses_total',
      'Source transactions the grouped fast path could not apply as they came (a row needed conflict resolution), by origin',
    ),
    roundTrips: registry.counter(
      'brabant_apply_round_trips_total',
      'Round trips to this node to apply changes (scripts, lookups, savepoints, statements prepared), by origin',
    ),
    strategyTransactions: registry.counter(
      'brabant_apply_strategy_transactions_total',
      'Source transactions applied, by origin and the strategy that applied them (fast, resolve-ahead, full)',
    ),
    conflicts: registry.counter('brabant_apply_conflicts_total', 'Conflicts, by kind and resolution'),
    deadLetters: registry.counter(
      'brabant_apply_dead_letters_total',
      'Events sent to the dead-letter topic, by reason',
    ),
    reapplied: registry.counter(
      'brabant_apply_dead_letters_reapplied_total',
      'Dead letters re-applied on request (brabant deadletters reapply), by origin',
    ),
    pausedStreams: registry.gauge(
      'brabant_apply_stream_paused',
      'Partitions of change topics paused (1) because the registry could not give a record’s schema, by topic, partition and reason',
    ),
    streamPauses: registry.counter(
      'brabant_apply_stream_pauses_total',
      'Times a change topic partition was paused on a schema the registry could not give, by reason',
    ),
    ddlApplied: registry.counter('brabant_apply_ddl_total', 'DDL events applied, by origin'),
    ddlFailures: registry.counter(
      'brabant_apply_ddl_failures_total',
      'DDL events that failed on this node (their origin’s stream pauses there), by origin',
    ),
    incompleteTransactions: registry.counter(
      'brabant_apply_incomplete_transactions_total',
      'Source transactions whose last event never came, by origin',
    ),
    tombstonesPruned: registry.counter(
      'brabant_apply_tombstones_pruned_total',
      'Tombstones removed once every peer applied past them',
    ),
    clusterUp: registry.gauge(
      'brabant_apply_cluster_up',
      'Whether the consumer of a Kafka cluster apply reads change topics from is running (1) or waiting for the cluster to be reachable again (0), by cluster',
    ),
    clusterSilentSeconds: registry.gauge(
      'brabant_apply_cluster_silent_seconds',
      'Seconds since a batch last came from a cluster (heartbeats keep it near their period while its streams flow; it grows while the cluster or the link to it is away), by cluster',
    ),
    clusterRestarts: registry.counter(
      'brabant_apply_cluster_restarts_total',
      'Times the consumer of one cluster was started again after that cluster could not be reached (the other clusters went on), by cluster',
    ),
    restarts: registry.counter(
      'brabant_apply_session_restarts_total',
      'Apply sessions restarted after a retriable error',
    ),
  };
}

export type ApplyMetrics = ReturnType<typeof applyMetrics>;
