/**
 * W9 of docs/benchmarks.md, partition heal: both regions under the W2 load (8 clients inserting
 * 1-row transactions each), the link between them cut for 60 s, then healed — the time from the
 * heal until every row written during the cut is on the other side, the catch-up rows/s, and the
 * WAL the nodes retain for replication during the cut.
 *
 * Each run has a stack of its own with a Kafka cluster per region and the link between them
 * (infra/link). Brabant: capture into its region's cluster, apply reading the other region's
 * cluster across the link (direct peer streams, the default). The baseline, native logical
 * replication, runs in the same run on the same nodes: a publication per region with a row filter
 * on its own rows (PostgreSQL 15 has no `origin = none`, so this keeps the two subscriptions from
 * looping), each subscribed to by the other region through a relay that is cut with the link.
 */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Link } from '../infra/link/relay.ts';
import { freePort } from '../infra/processes.ts';
import { type Stack, startStack, stopRecorded, withoutExternal } from '../infra/stack.ts';
import { brabantNames, type Ctx } from './lib/context.ts';
import { adminQuery, createDb, type Db, RowWriters, type Server } from './lib/pg.ts';
import { type Service, startService } from './lib/services.ts';
import { nowMs, say, sleep, until } from './lib/util.ts';
import type { RunResult, Scenario } from './scenarios.ts';

const MiB = 2 ** 20;

export const W9: Scenario = {
  id: 'W9',
  title: 'partition heal',
  systems: ['brabant', 'native'],
  rows: [
    {
      key: 'healSeconds',
      label: 'heal → converged (every row written during the cut on the other side, both ways)',
      unit: 's',
      better: 'lower',
      baselines: ['native'],
    },
    {
      key: 'catchUpRowsPerSec',
      label: 'catch-up rows/s (rows written during the cut, both regions ÷ heal → converged)',
      unit: 'rows/s',
      better: 'higher',
      baselines: ['native'],
    },
    {
      key: 'retainedWalMiB',
      label: 'WAL retained for replication during the cut (max over both nodes)',
      unit: 'MiB',
      better: 'lower',
      baselines: ['native'],
    },
    {
      key: 'rowsDuringCut',
      label: 'rows committed during the cut (both regions; writes never stop)',
      unit: 'rows',
      better: 'higher',
      baselines: ['native'],
    },
  ],
  run: runW9,
};

const REGIONS = ['vlaanderen', 'wallonie'] as const;

async function runW9(ctx: Ctx, system: string, label: string): Promise<RunResult> {
  const o = ctx.opts;
  const cutSeconds = o.w9CutSeconds;
  const workDir = resolve('.cache', `bench-w9-${label}`);
  await stopRecorded(workDir).catch(() => {});
  rmSync(workDir, { recursive: true, force: true });
  let stack: Stack | undefined;
  let nodeLink: Link | undefined;
  const services: Service[] = [];
  const writers: RowWriters[] = [];
  const dbs: Db[] = [];
  const details: Record<string, unknown> = {
    cutSeconds,
    clientsPerRegion: o.w2Clients,
    rateLimit: o.w2Rate || null,
  };
  try {
    stack = await startStack(
      { regions: REGIONS.map((name) => ({ name, nodes: 1 })), kafka: 'per-region' },
      {
        workDir,
        basePort: 0,
        env: withoutExternal(process.env),
      },
    );
    const link = stack.linkUrl!;
    const servers: Server[] = stack.regions.map((r) => ({
      id: r.nodes[0]!.id,
      url: r.nodes[0]!.url,
      port: r.nodes[0]!.port,
    }));
    const name = `bench_w9_${system.slice(0, 3)}`;
    for (const s of servers) dbs.push(await createDb(s, name));
    const [a, b] = dbs as [Db, Db];
    const slots: string[] = [];
    if (system === 'brabant') {
      const names = REGIONS.map((r) => brabantNames(`w9${r.slice(0, 1)}`, r));
      for (const [i, r] of stack.regions.entries()) {
        const other = stack.regions[1 - i]!;
        const n = names[i]!;
        slots.push(n.slot);
        const logDir = join(o.outDir, 'logs', label);
        services.push(
          await startService(
            'capture',
            n.nodeId,
            {
              nodeId: n.nodeId,
              region: r.name,
              pgUrl: dbs[i]!.url,
              kafkaBrokers: r.kafkaBrokers,
              registryUrl: r.registryUrl,
              ...(r.registryPrimaryUrl !== r.registryUrl ? { registryPrimaryUrl: r.registryPrimaryUrl } : {}),
              topic: n.topic,
              slot: n.slot,
              publication: n.publication,
            },
            o.serviceEnv,
            { logDir },
          ),
        );
        services.push(
          await startService(
            'apply',
            n.nodeId,
            {
              nodeId: n.nodeId,
              pgUrl: dbs[i]!.url,
              kafkaBrokers: r.kafkaBrokers,
              registryUrl: r.registryUrl,
              topics: [n.topic],
              sources: [`${names[1 - i]!.topic}=${other.kafkaFromPeers.join('|')}`],
            },
            o.serviceEnv,
            { logDir },
          ),
        );
      }
    } else {
      // a relay per node, cut with the link: the subscriptions connect to the other node through it
      const relays = await Promise.all(servers.map(async (s) => ({ s, port: await freePort() })));
      nodeLink = new Link(
        relays.map(({ s, port }) => ({
          name: `postgres ${s.id}`,
          listenPort: port,
          targetHost: '127.0.0.1',
          targetPort: s.port,
        })),
      );
      await nodeLink.start();
      for (const [i, db] of dbs.entries()) {
        await db.client.query(`create publication w9_pub for table items where (region = '${REGIONS[i]}')`);
      }
      for (const [i, db] of dbs.entries()) {
        const from = relays[1 - i]!;
        const sub = `w9_sub_${i}`;
        await db.client.query(
          `create subscription ${sub} connection 'host=127.0.0.1 port=${from.port} dbname=${name} user=postgres' publication w9_pub with (copy_data = false)`,
        );
        slots.push(sub);
      }
    }
    // warm up: a row each way
    await a.client.query("insert into items values (0, 'vlaanderen', 0, 'w', clock_timestamp())");
    await b.client.query("insert into items values (1000000000, 'wallonie', 0, 'w', clock_timestamp())");
    const both = async () =>
      Promise.all(
        dbs.map(async (d) => Number((await d.client.query('select count(*) from items')).rows[0].count)),
      );
    await until('the warm-up rows both ways', async () => (await both()).every((n) => n === 2), {
      timeoutMs: 120_000,
      intervalMs: 100,
    });
    for (const [i, db] of dbs.entries()) {
      const w = new RowWriters(db.url, {
        clients: o.w2Clients,
        firstId: i === 0 ? 1 : 1_000_000_001,
        region: REGIONS[i]!,
        ratePerSec: o.w2Rate,
      });
      writers.push(w);
      w.start();
    }
    await sleep(Math.min(10, cutSeconds) * 1000);
    const cut = async () => {
      if (nodeLink) nodeLink.setCut('reset');
      else await fetch(`${link}/cut?mode=reset`, { method: 'POST' });
    };
    const heal = async () => {
      if (nodeLink) nodeLink.heal();
      else await fetch(`${link}/heal`, { method: 'POST' });
    };
    const atCut = writers.reduce((n, w) => n + w.commits.size, 0);
    await cut();
    const cutAt = nowMs();
    let maxRetained = 0;
    const samples: number[][] = [];
    while (nowMs() - cutAt < cutSeconds * 1000) {
      await sleep(2000);
      const r = await Promise.all(
        // a capture's slot is on its own node, a subscription's on the node it subscribes to
        servers.map(async (s) => {
          const q = await adminQuery<{ b: string | null }>(
            s,
            'select max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::text as b from pg_replication_slots where slot_name = any($1)',
            [slots],
          );
          return Number(q.rows[0]?.b ?? 0);
        }),
      );
      samples.push(r.map((x) => Math.round((x / MiB) * 100) / 100));
      maxRetained = Math.max(maxRetained, ...r);
      const failed = services.find((s) => s.deathReason() !== undefined);
      if (failed) throw new Error(failed.deathReason());
    }
    const stopped = await Promise.all(writers.map((w) => w.stop()));
    const total = stopped.reduce((n, w) => n + w.rows, 0) + 2;
    await heal();
    const healedAt = nowMs();
    const rowsDuringCut = total - 2 - atCut;
    await until('both regions to hold every row', async () => (await both()).every((n) => n === total), {
      timeoutMs: 3_600_000,
      intervalMs: 50,
      abort: () => services.find((s) => s.deathReason() !== undefined)?.deathReason(),
    });
    const seconds = (nowMs() - healedAt) / 1000;
    Object.assign(details, { rowsTotal: total, retainedMiBEvery2s: samples });
    say(
      `W9 ${system}: ${rowsDuringCut} rows during the ${cutSeconds} s cut; converged ${seconds.toFixed(1)} s after the heal`,
    );
    return {
      values: {
        healSeconds: seconds,
        catchUpRowsPerSec: rowsDuringCut / seconds,
        retainedWalMiB: maxRetained / MiB,
        rowsDuringCut,
      },
      details,
    };
  } finally {
    for (const w of writers) await w.stop().catch(() => {});
    await Promise.all(services.map((s) => s.stop(5_000)));
    for (const [i, db] of dbs.entries()) {
      if (system === 'native')
        await db.client.query(`drop subscription if exists w9_sub_${i}`).catch(() => {});
      await db.close().catch(() => {});
    }
    await nodeLink?.stop().catch(() => {});
    await stack?.stop().catch(() => {});
  }
}
