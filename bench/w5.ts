/**
 * W5, capture alone: rows/s and bytes/s from the slot into Kafka. N rows are written while
 * capture is stopped (its slot exists), then capture starts and the clock runs until Kafka holds
 * every change (capture's last committed position passes a marker written after the rows).
 * The Debezium baseline (Kafka Connect with debezium-connector-postgres) is not built yet.
 */
import { BrabantRun, brabantNames } from './lib/context.ts';
import { bulkInsert, createDb } from './lib/pg.ts';
import { bounded, nowMs, tag, until } from './lib/util.ts';
import type { Scenario } from './scenarios.ts';

const HOUR = 3_600_000;

export const W5: Scenario = {
  id: 'W5',
  title: 'capture alone',
  systems: ['brabant', 'debezium'],
  unavailable: {
    debezium:
      'n/a (not implemented: the Kafka Connect 4.4.0 + debezium-connector-postgres 3.6.1.Final baseline is not built yet)',
  },
  rows: [
    {
      key: 'rowsPerSec',
      label: 'rows/s from the slot into Kafka (start → all committed)',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['debezium'],
    },
    {
      key: 'bytesPerSec',
      label: 'bytes/s of event values',
      unit: 'B/s',
      better: 'higher',
      baselines: ['debezium'],
    },
  ],
  async run(ctx, _system, label) {
    const n = ctx.opts.w5Rows;
    const db = await createDb(ctx.a, `bench_w5_bra_${tag()}`);
    const brabant = new BrabantRun(ctx, label);
    const details: Record<string, unknown> = { rows: n, txRows: ctx.opts.w1TxRows };
    try {
      const names = brabantNames('w5', ctx.regionA);
      // first start: creates the slot and the topic; then stopped while the rows are written
      const first = await brabant.capture(db, names);
      await first.stop();
      details.writeSeconds = await bulkInsert(db.url, 1, n, ctx.opts.w1TxRows, ctx.regionA);
      const r = await db.client.query<{ l: string }>(
        "select pg_logical_emit_message(true, 'brabant.bench', 'end')::text as l",
      );
      const [hi, lo] = r.rows[0]!.l.split('/');
      const marker = (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
      const t0 = nowMs();
      const capture = await brabant.capture(db, names);
      const ready = nowMs();
      details.readySeconds = (ready - t0) / 1000;
      await until(
        'capture to commit every change to Kafka',
        async () => BigInt(Math.round(await capture.metric('brabant_capture_last_committed_lsn'))) >= marker,
        { timeoutMs: HOUR, intervalMs: 20, abort: () => brabant.deathReason() },
      );
      const done = nowMs();
      const seconds = (done - t0) / 1000;
      const bytes = await capture.metric('brabant_capture_bytes_total');
      const events = await capture.metric('brabant_capture_events_total', { kind: 'insert' });
      if (events < n) throw new Error(`capture reports ${events} insert events, not ${n}`);
      details.seconds = seconds;
      details.steadyRowsPerSec = n / ((done - ready) / 1000);
      details.capturePeakRssMB = capture.peakRss() / 2 ** 20;
      details.bytes = bytes;
      return { values: { rowsPerSec: n / seconds, bytesPerSec: bytes / seconds }, details };
    } finally {
      await bounded('stopping Brabant', () => brabant.cleanup());
      await bounded(`dropping database ${db.name}`, () => db.drop());
    }
  },
};
