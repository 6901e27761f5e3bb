/**
 * Direct peer streams against MirrorMaker 2 (docs/clusters.md, "Choosing how apply gets a peer
 * region's stream"): the same per-region stack twice, apply reading the other region's cluster
 * across the link (direct) or a MirrorMaker 2 copy in its own cluster (mirror), with the link
 * slowed down by a delay each way. Measures, per layout: lag commit → visible on the other node
 * over the slow link, what a 15 s cut costs after the heal, and for the mirror whether its copy
 * holds any event twice or one of an aborted capture transaction after MirrorMaker is killed with
 * kill -9 mid-stream (exactly-once).
 *
 *   npx tsx bench/peer-streams.ts [--delay-ms 25] [--seconds 20] [--cut-seconds 15]
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { linkControl } from '../infra/link/control.ts';
import { readState, type Stack, startStack, stopRecorded, withoutExternal } from '../infra/stack.ts';
import { startPart } from '../infra/stack-control.ts';
import { changeTopic } from '../services/protocol/topics.ts';
import { createDb, type Db, RowWriters, VisibilityPoller } from './lib/pg.ts';
import { type Service, startService } from './lib/services.ts';
import { lagStats, nowMs, say, sleep, until } from './lib/util.ts';

const { values } = parseArgs({
  options: {
    'delay-ms': { type: 'string', default: '25' },
    seconds: { type: 'string', default: '20' },
    'cut-seconds': { type: 'string', default: '15' },
    rate: { type: 'string', default: '100' },
    modes: { type: 'string', default: 'direct,mirror' },
  },
});
const DELAY = Number(values['delay-ms']);
const SECONDS = Number(values.seconds);
const CUT = Number(values['cut-seconds']);
const RATE = Number(values.rate);

const ENV = withoutExternal(process.env);

async function measure(mode: 'direct' | 'mirror') {
  const workDir = resolve('.cache', `bench-peer-streams-${mode}`);
  await stopRecorded(workDir).catch(() => {});
  rmSync(workDir, { recursive: true, force: true });
  const stack: Stack = await startStack(
    {
      regions: [
        { name: 'vlaanderen', nodes: 1 },
        { name: 'wallonie', nodes: 1 },
      ],
      kafka: 'per-region',
      peerStreams: mode,
    },
    { workDir, basePort: 0, env: ENV },
  );
  const link = linkControl(stack.linkUrl!);
  const services: Service[] = [];
  const dbs: Db[] = [];
  try {
    for (const r of stack.regions) {
      const n = r.nodes[0]!;
      dbs.push(await createDb({ id: n.id, url: n.url, port: n.port }, `peer_${mode}`));
    }
    for (const [i, r] of stack.regions.entries()) {
      const other = stack.regions[1 - i]!;
      const id = r.nodes[0]!.id;
      const common = {
        nodeId: id,
        pgUrl: dbs[i]!.url,
        kafkaBrokers: r.kafkaBrokers,
        registryUrl: r.registryUrl,
      };
      services.push(
        await startService(
          'capture',
          id,
          {
            ...common,
            region: r.name,
            ...(r.registryPrimaryUrl !== r.registryUrl ? { registryPrimaryUrl: r.registryPrimaryUrl } : {}),
          },
          {},
          { logDir: `${workDir}/logs` },
        ),
      );
      services.push(
        await startService(
          'apply',
          id,
          mode === 'direct'
            ? {
                ...common,
                regions: [r.name],
                sources: [`${changeTopic(other.name)}=${other.kafkaFromPeers.join('|')}`],
              }
            : { ...common, regions: [r.name, other.name] },
          {},
          { logDir: `${workDir}/logs` },
        ),
      );
    }
    await link.delay(DELAY);
    const [a, b] = dbs as [Db, Db];
    await a.client.query("insert into items values (0, 'vlaanderen', 0, 'w', clock_timestamp())");
    await until(
      'warm-up row on wallonie',
      async () => (await b.client.query('select 1 from items where id = 0')).rowCount === 1,
      {
        timeoutMs: 120_000,
        intervalMs: 50,
      },
    );
    // -- lag over the slow link
    const writers = new RowWriters(a.url, { clients: 1, firstId: 1, region: 'vlaanderen', ratePerSec: RATE });
    const poller = new VisibilityPoller(b.url, writers.commits, {
      firstId: 1,
      endId: 1_000_000_000,
      intervalMs: 5,
    });
    await poller.start();
    writers.start();
    await sleep(SECONDS * 1000);
    // -- a cut under the same writes
    await link.cut('reset');
    await sleep(CUT * 1000);
    const beforeHeal = writers.commits.size;
    await link.heal();
    const healed = nowMs();
    await sleep(2000);
    const w = await writers.stop();
    await until('every row on wallonie', async () => poller.caughtUp(), {
      timeoutMs: 600_000,
      intervalMs: 50,
    });
    await poller.stop();
    const { lags } = poller.lags();
    const firstN = Math.floor((w.rows * SECONDS) / (SECONDS + CUT + 2));
    const live = lagStats(lags.subarray(0, Math.max(1, firstN - RATE)));
    // when the rows written during the cut became visible, from the heal
    let cutRowsVisible = 0;
    for (let i = firstN; i < beforeHeal; i++) cutRowsVisible = Math.max(cutRowsVisible, lags[i]!);
    const result: Record<string, unknown> = {
      mode,
      delayMsEachWay: DELAY,
      lagP50Ms: Math.round(live.p50),
      lagP99Ms: Math.round(live.p99),
      healToCaughtUpS: Number(((nowMs() - healed) / 1000).toFixed(1)),
      rows: w.rows,
    };
    if (mode === 'mirror') Object.assign(result, await mirrorExactlyOnce(stack, a, b, services[0]!));
    return result;
  } finally {
    await Promise.all(services.map((s) => s.stop(5_000)));
    for (const d of dbs) await d.close().catch(() => {});
    await stack.stop();
  }
}

/** kill -9 of Wallonie's MirrorMaker under writes, restart; then the copy must hold every event once. */
async function mirrorExactlyOnce(
  stack: Stack,
  a: Db,
  b: Db,
  capture: Service,
): Promise<Record<string, unknown>> {
  await linkControl(stack.linkUrl!).delay(0);
  const writers = new RowWriters(a.url, {
    clients: 2,
    firstId: 10_000_000,
    region: 'vlaanderen',
    ratePerSec: 500,
  });
  writers.start();
  await sleep(3000);
  const rec = readState(stack.workDir)!.pids.find((p) => p.id === 'mirror-wallonie')!;
  process.kill(rec.pid, 'SIGKILL');
  await sleep(3000);
  await startPart(stack.workDir, 'mirror-wallonie');
  await sleep(3000);
  const w = await writers.stop();
  const count = async (d: Db) =>
    Number((await d.client.query('select count(*) from items where id >= 10000000')).rows[0].count);
  const written = await count(a);
  await until('the killed mirror’s rows on wallonie', async () => (await count(b)) === written, {
    timeoutMs: 300_000,
    intervalMs: 100,
  });
  // no more events (heartbeats included) from here on: the source topic is final
  await capture.stop();
  const source = await positionsIn(stack.regions[0]!.kafkaBrokers);
  let copy = await positionsIn(stack.regions[1]!.kafkaBrokers);
  for (let i = 0; i < 20 && copy.events < source.events; i++) {
    await sleep(1000);
    copy = await positionsIn(stack.regions[1]!.kafkaBrokers);
  }
  const missing = [...source.seen.keys()].filter((p) => !copy.seen.has(p)).length;
  const duplicates = [...copy.seen.values()].filter((n) => n > 1).length;
  return {
    eosEventsInSource: source.events,
    eosEventsInCopy: copy.events,
    eosDuplicatesInCopy: duplicates,
    eosMissingInCopy: missing,
    eosRowsAroundKill: written,
    writerRows: w.rows,
  };
}

/** Every event of Vlaanderen's change topic in a cluster, read as a plain read_committed consumer, by position. */
async function positionsIn(brokers: string[]): Promise<{ events: number; seen: Map<string, number> }> {
  const kafka = new Kafka({ clientId: 'eos-check', brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `eos-${Date.now()}-${Math.random()}`, readUncommitted: false });
  const seen = new Map<string, number>();
  let events = 0;
  let last = Date.now();
  await consumer.connect();
  await consumer.subscribe({ topic: changeTopic('vlaanderen'), fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      last = Date.now();
      events++;
      const h = message.headers ?? {};
      const pos = `${h['brabant.commit-lsn']}#${h['brabant.index']}`;
      seen.set(pos, (seen.get(pos) ?? 0) + 1);
    },
  });
  while (Date.now() - last < 4000) await sleep(500);
  await consumer.disconnect();
  return { events, seen };
}

const results = [];
for (const mode of values.modes!.split(',') as ('direct' | 'mirror')[]) {
  say(`measuring ${mode} peer streams (link delay ${DELAY} ms each way)`);
  results.push(await measure(mode));
  say(JSON.stringify(results.at(-1)));
}
console.log(JSON.stringify(results, null, 2));
process.exit(0);
