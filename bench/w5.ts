/**
 * W5, capture alone: rows/s and bytes/s from the slot into Kafka. N rows are written while the
 * capturing process is not running (its slot exists), then it starts and the clock runs from the
 * process start until Kafka holds every change: start-up is included, and reported separately.
 *
 * - Brabant: capture's first start creates its slot and topic, then it is stopped; done when its
 *   last committed position passes a marker written after the rows. Events are Avro with
 *   Confluent framing, one Kafka transaction per batch.
 * - Debezium (baseline): debezium-connector-postgres in Kafka Connect standalone (bench/lib/
 *   debezium.ts), plugin.name=pgoutput, its own publication and slot (created before the rows),
 *   snapshot.mode=no_data (streams only what the slot holds), JSON converter without schemas,
 *   a topic created like Brabant's (same partitions); done when the topic's end offsets add up
 *   to N. Bytes are the sum of the record values' sizes, read back from the topic afterwards.
 */
import { Kafka, logLevel } from 'kafkajs';
import { BrabantRun, brabantNames, type Ctx } from './lib/context.ts';
import { ConnectWorker } from './lib/debezium.ts';
import { bulkInsert, createDb, type Db } from './lib/pg.ts';
import { bounded, nowMs, StallWatch, say, tag, until } from './lib/util.ts';
import type { RunResult, Scenario } from './scenarios.ts';

const HOUR = 3_600_000;

/** Partitions of Brabant's change topic (capture's BRABANT_CAPTURE_TOPIC_PARTITIONS): Debezium's topic gets the same. */
function topicPartitions(ctx: Ctx): number {
  return Number(ctx.opts.serviceEnv.BRABANT_CAPTURE_TOPIC_PARTITIONS ?? 6);
}

export const W5: Scenario = {
  id: 'W5',
  title: 'capture alone',
  systems: ['brabant', 'debezium'],
  rows: [
    {
      key: 'rowsPerSec',
      label: 'rows/s from the slot into Kafka (process start → all N events in Kafka; start-up included)',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['debezium'],
    },
    {
      key: 'bytesPerSec',
      label:
        'bytes/s of event values, start-up included (Brabant: Avro, Confluent framing; Debezium: JSON without schemas)',
      unit: 'B/s',
      better: 'higher',
      baselines: ['debezium'],
    },
    {
      key: 'steadyRowsPerSec',
      label: 'rows/s after start-up (capture session / connector task running → all N events in Kafka)',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['debezium'],
    },
    {
      key: 'startSeconds',
      label: 'start-up: process start → capture session / connector task running (Node.js vs JVM + Connect)',
      unit: 's',
      better: 'lower',
      baselines: ['debezium'],
    },
    {
      key: 'bytesPerEvent',
      label: 'bytes per event value (the record format, not speed)',
      unit: 'B',
      better: 'lower',
      baselines: ['debezium'],
    },
  ],
  async run(ctx, system, label) {
    if (system === 'debezium') return runDebezium(ctx, label);
    return runBrabant(ctx, label);
  },
};

async function runBrabant(ctx: Ctx, label: string): Promise<RunResult> {
  const n = ctx.opts.w5Rows;
  const db = await createDb(ctx.a, `bench_w5_bra_${tag()}`);
  const brabant = new BrabantRun(ctx, label);
  const details: Record<string, unknown> = {
    rows: n,
    txRows: ctx.opts.w1TxRows,
    format: 'Avro, Confluent framing',
  };
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
    details.capturePeakRssMB = capture.peakRss() / 2 ** 20;
    details.bytes = bytes;
    return {
      values: {
        rowsPerSec: n / seconds,
        bytesPerSec: bytes / seconds,
        steadyRowsPerSec: n / ((done - ready) / 1000),
        startSeconds: (ready - t0) / 1000,
        bytesPerEvent: bytes / events,
      },
      details,
    };
  } finally {
    await bounded('stopping Brabant', () => brabant.cleanup());
    await bounded(`dropping database ${db.name}`, () => db.drop());
  }
}

function kafkaClient(ctx: Ctx) {
  return new Kafka({
    clientId: 'brabant-bench-w5',
    brokers: ctx.brokers.split(','),
    logLevel: logLevel.NOTHING,
  });
}

/** Sum of the high watermarks of a topic's partitions (records in it: Connect's producer is not transactional). */
async function endOffsets(admin: ReturnType<Kafka['admin']>, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((s, o) => s + Number(o.high), 0);
}

/** Reads every record of `topic` (from the start) and sums the sizes of the keys and values. */
async function recordSizes(
  kafka: Kafka,
  topic: string,
  expected: number,
): Promise<{ records: number; valueBytes: number; keyBytes: number; sample: string | undefined }> {
  const groupId = `brabant-bench-w5-sizes-${tag()}`;
  const consumer = kafka.consumer({ groupId, maxBytes: 16 * 1024 * 1024, maxWaitTimeInMs: 100 });
  const out = { records: 0, valueBytes: 0, keyBytes: 0, sample: undefined as string | undefined };
  let timer: NodeJS.Timeout | undefined;
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`read ${out.records} of ${expected} records of ${topic} back in 10 min`)),
        600_000,
      );
      consumer
        .run({
          eachBatchAutoResolve: true,
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              out.records++;
              out.valueBytes += m.value?.length ?? 0;
              out.keyBytes += m.key?.length ?? 0;
              if (out.sample === undefined && m.value) out.sample = m.value.toString().slice(0, 1500);
            }
            if (out.records >= expected) resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
  }
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteGroups([groupId]).catch(() => {});
  await admin.disconnect().catch(() => {});
  return out;
}

async function runDebezium(ctx: Ctx, label: string): Promise<RunResult> {
  if ('unavailable' in ctx.debezium) throw new Error(ctx.debezium.unavailable);
  const install = ctx.debezium;
  const n = ctx.opts.w5Rows;
  const t = tag();
  const db: Db = await createDb(ctx.a, `bench_w5_dbz_${t}`);
  const slot = `bench_dbz_slot_${t}`;
  const publication = `bench_dbz_pub_${t}`;
  const prefix = `bench_dbz_${t}`;
  const topic = `${prefix}.public.items`;
  const kafka = kafkaClient(ctx);
  const admin = kafka.admin();
  await admin.connect();
  let worker: ConnectWorker | undefined;
  const connector = {
    name: `bench-w5-${t}`,
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': '1',
    'database.hostname': '127.0.0.1',
    'database.port': String(db.server.port),
    'database.user': 'postgres',
    'database.dbname': db.name,
    'topic.prefix': prefix,
    'plugin.name': 'pgoutput',
    'slot.name': slot,
    'publication.name': publication,
    'publication.autocreate.mode': 'disabled',
    'snapshot.mode': 'no_data',
    'table.include.list': 'public.items',
    ...ctx.opts.debeziumSettings,
  };
  const partitions = topicPartitions(ctx);
  const details: Record<string, unknown> = {
    rows: n,
    txRows: ctx.opts.w1TxRows,
    format: 'JSON (org.apache.kafka.connect.json.JsonConverter, schemas.enable=false)',
    debezium: install.version,
    kafkaConnect: `${install.connectVersion} standalone`,
    java: install.javaVersion,
    topic,
    partitions,
    connector,
    debeziumSettings:
      Object.keys(ctx.opts.debeziumSettings).length === 0
        ? 'Debezium and Connect defaults (max.batch.size 2048, max.queue.size 8192; producer acks=all, max.in.flight 1)'
        : ctx.opts.debeziumSettings,
  };
  const stall = new StallWatch(
    'records in the Debezium topic',
    () => endOffsets(admin, topic),
    Math.max(ctx.opts.stallSeconds * 1000, 600_000),
  );
  let watch: { abort: () => string | undefined; stop: () => void } | undefined;
  try {
    // The publication and slot of its own, before the rows: the slot holds what Debezium streams.
    await db.client.query(`create publication ${publication} for table items`);
    await db.client.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: partitions, replicationFactor: -1 }],
    });
    details.writeSeconds = await bulkInsert(db.url, 1, n, ctx.opts.w1TxRows, ctx.regionA);
    if ((await endOffsets(admin, topic)) !== 0) throw new Error(`${topic} is not empty before the start`);
    const dir = `${ctx.opts.outDir}/debezium/${label}`;
    worker = await ConnectWorker.start(install, {
      dir,
      logFile: `${ctx.opts.outDir}/logs/${label}/kafka-connect.log`,
      brokers: ctx.brokers,
      connector,
    });
    details.log = worker.proc.logFile;
    const t0 = worker.spawnedAt;
    const restUp = await worker.waitRestUp();
    const running = await worker.waitTaskRunning();
    details.jvmRestUpSeconds = (restUp - t0) / 1000;
    details.taskRunningSeconds = (running - t0) / 1000;
    watch = worker.watch();
    const w = watch;
    let firstAt = 0;
    const done = await until(
      `Debezium to put all ${n} change events into ${topic}`,
      async () => {
        const have = await endOffsets(admin, topic);
        const at = nowMs();
        if (have > 0 && firstAt === 0) firstAt = at;
        return have >= n ? at : undefined;
      },
      { timeoutMs: HOUR, intervalMs: 20, abort: () => w.abort() ?? stall.reason() },
    );
    const seconds = (done - t0) / 1000;
    details.seconds = seconds;
    details.firstEventSeconds = firstAt > 0 ? (firstAt - t0) / 1000 : null;
    const total = await endOffsets(admin, topic);
    if (total !== n) say(`${label}: ${topic} holds ${total} records, ${n} rows were written`);
    const sizes = await recordSizes(kafka, topic, total);
    details.records = sizes.records;
    details.valueBytes = sizes.valueBytes;
    details.keyBytes = sizes.keyBytes;
    details.sampleValue = sizes.sample;
    return {
      values: {
        rowsPerSec: n / seconds,
        bytesPerSec: sizes.valueBytes / seconds,
        steadyRowsPerSec: n / ((done - running) / 1000),
        startSeconds: (running - t0) / 1000,
        bytesPerEvent: sizes.valueBytes / sizes.records,
      },
      details,
    };
  } finally {
    watch?.stop();
    stall.stop();
    if (worker !== undefined) {
      const wk = worker;
      await bounded('stopping Kafka Connect', () => wk.stop());
    }
    await bounded(`deleting topic ${topic}`, () => admin.deleteTopics({ topics: [topic], timeout: 10_000 }));
    await admin.disconnect().catch(() => {});
    await bounded(`dropping database ${db.name}`, () => db.drop());
  }
}
