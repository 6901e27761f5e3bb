/** Capture's Prometheus metrics, declared once. */
import { MetricsRegistry } from '../runtime/metrics.ts';

export function captureMetrics(registry = new MetricsRegistry()) {
  return {
    registry,
    events: registry.counter('brabant_capture_events_total', 'Change events produced, by kind'),
    bytes: registry.counter('brabant_capture_bytes_total', 'Bytes of encoded events produced'),
    transactions: registry.counter('brabant_capture_source_transactions_total', 'Source transactions seen'),
    skippedTransactions: registry.counter(
      'brabant_capture_skipped_transactions_total',
      'Source transactions not sent on, by reason',
    ),
    batches: registry.counter('brabant_capture_batches_total', 'Kafka transactions committed'),
    batchEvents: registry.histogram(
      'brabant_capture_batch_events',
      'Events per Kafka transaction',
      [1, 10, 100, 1000, 5000, 20000],
    ),
    batchBytes: registry.histogram(
      'brabant_capture_batch_bytes',
      'Bytes per Kafka transaction',
      [1e3, 1e4, 1e5, 1e6, 4e6, 16e6],
    ),
    commitSeconds: registry.histogram(
      'brabant_capture_commit_seconds',
      'Time to produce and commit one batch',
      [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    ),
    lastCommittedLsn: registry.gauge(
      'brabant_capture_last_committed_lsn',
      'Commit LSN of the last event committed in Kafka',
    ),
    durableLsn: registry.gauge(
      'brabant_capture_confirmed_lsn',
      'LSN confirmed to the slot (everything before it is in Kafka)',
    ),
    slotLagBytes: registry.gauge(
      'brabant_capture_slot_lag_bytes',
      'WAL bytes between the current WAL position and the slot confirmed position',
    ),
    deadLetters: registry.counter(
      'brabant_capture_dead_letters_total',
      'Changes not sent on but written to the dead-letter topic, by error code',
    ),
    pausedTables: registry.gauge(
      'brabant_capture_table_paused',
      '1 while a table cannot be captured (its changes go to the dead-letter topic), by table',
    ),
    resyncRows: registry.counter(
      'brabant_capture_resync_rows_total',
      'Rows and remembered deletes of resync chunks, by kind and outcome (sent, or dropped because the log changed them between the watermarks)',
    ),
    splitEvents: registry.counter(
      'brabant_capture_split_events_total',
      'Events over the topic message limit, sent as several Chunk records',
    ),
    insertOnlyTables: registry.gauge(
      'brabant_capture_insert_only_tables',
      'Tables without replica identity, of which only inserts and truncates are captured',
    ),
    restarts: registry.counter(
      'brabant_capture_session_restarts_total',
      'Capture sessions restarted after a retriable error',
    ),
    lastCommitTime: registry.gauge(
      'brabant_capture_last_commit_timestamp_seconds',
      'Unix time of the last Kafka transaction capture committed (heartbeats make one every BRABANT_CAPTURE_HEARTBEAT_MS)',
    ),
    retainedWal: registry.gauge(
      'brabant_capture_slot_retained_wal_bytes',
      'WAL bytes the node keeps for the capture slot (current WAL position minus its restart_lsn), read apart from the sessions so it keeps coming while Kafka is away',
    ),
    walWarning: registry.gauge(
      'brabant_capture_slot_wal_warning',
      'Whether the slot retains WAL past BRABANT_CAPTURE_WAL_WARN_BYTES, or past max_slot_wal_keep_size (1), or not (0)',
    ),
  };
}

export type CaptureMetrics = ReturnType<typeof captureMetrics>;
