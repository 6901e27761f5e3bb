/**
 * A node restored from a base backup (pg_basebackup taken earlier, while it replicated) catches
 * up from Kafka: its apply resumes from the offsets its database saved, not from the consumer
 * group's newer ones, so the peer's changes since the backup are applied; its own changes made
 * after the backup (in Kafka already, lost with the restore) come back to it with their version;
 * its capture moves the WAL past them and streams again, so what it writes next reaches the peer.
 * A backup older than what Kafka still holds is refused with what to do instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../infra/stack.ts';
import { type Cluster, type Member, nodeServers, replicationCluster, server } from './support/cluster.ts';
import { baseBackup, replaceDataFolder } from './support/data-folder.ts';
import { versionedRows } from './support/load.ts';
import { waitConverged } from './support/pair.ts';
import { kafka, node, stack } from './support/stack.ts';

const SCHEMA = 'create table kv (id int primary key, val text)';

let servers: Stack;
let cluster: Cluster;
let p: Member;
let x: Member;
const procs = new Map<string, Awaited<ReturnType<Cluster['startServices']>>>();

/** The restored node's connection: the server was replaced under the old one. */
async function reconnect(m: Member): Promise<void> {
  await m.client.end().catch(() => {});
  const pg = (await import('pg')).default;
  m.client = new pg.Client({ connectionString: m.url });
  m.client.on('error', () => {});
  await m.client.connect();
}

beforeAll(async () => {
  servers = await nodeServers('restore', [{ name: 'wallonie', nodes: 1 }]);
  cluster = await replicationCluster(SCHEMA, [node('vl-1'), server(servers, 'wa-1')]);
  [p, x] = cluster.members as [Member, Member];
  for (const m of [p, x]) procs.set(m.id, await cluster.startServices(m));
});
afterAll(async () => {
  await cluster?.cleanup();
  await servers?.stop();
});

describe('restore from a base backup', { timeout: 240_000 }, () => {
  it('resumes from the origin progress the backup holds and gets back its own changes made after it', async () => {
    for (const m of [p, x])
      await m.client.query(`insert into kv select g, $1 from generate_series($2::int, $2::int + 99) g`, [
        `${m.id} before the backup`,
        1000 * (m.place + 1),
      ]);
    await waitConverged([p, x], 'kv', (r) => r.length === 200);
    await new Promise((r) => setTimeout(r, 1500)); // apply saves its offsets (every second)
    const backup = baseBackup(servers, 'wa-1', 'before');

    // after the backup: the peer writes (x applies it, its group's offsets move on) and x writes
    await p.client.query(`insert into kv select g, 'p after the backup' from generate_series(5001, 5100) g`);
    await x.client.query(`insert into kv select g, 'x after the backup' from generate_series(6001, 6050) g`);
    await x.client.query(`update kv set val = 'x updated after the backup' where id = 1001`);
    await waitConverged([p, x], 'kv', (r) => r.length === 350);
    await new Promise((r) => setTimeout(r, 1500)); // the group's offsets are committed past all of it
    const expected = await versionedRows(p, 'kv');

    await procs.get(x.id)!.capture.kill('SIGKILL');
    await procs.get(x.id)!.apply.kill('SIGKILL');
    await replaceDataFolder(servers, 'wa-1', backup);
    await reconnect(x);
    expect((await x.client.query('select count(*)::int as n from kv')).rows[0].n).toBe(200);

    const apply = cluster.apply(x);
    const capture = cluster.capture(x);
    await apply.waitForLog(/lacks .* own transactions that are in Kafka/);
    await apply.waitForLog(/reading from where this database says it read/);
    await capture.waitForLog(/past its lost changes, so no new change reuses their LSNs/);
    await capture.waitForLog(/capture session starting/);
    procs.set(x.id, { apply, capture });
    await waitConverged([p, x], 'kv', (r) => r.length === 350, 60_000);
    expect(await versionedRows(x, 'kv')).toEqual(expected);
    // what it writes now reaches the peer (no LSN of a lost change reused)
    await x.client.query(`insert into kv values (7000, 'x after the restore')`);
    await waitConverged([p, x], 'kv', (r) => r.length === 351, 30_000);
  });

  it('refuses a backup older than what Kafka holds of the peer’s stream, saying to rebuild instead', async () => {
    const backup = baseBackup(servers, 'wa-1', 'old');
    await p.client.query(`insert into kv select g, 'p later' from generate_series(8001, 8010) g`);
    await waitConverged([p, x], 'kv', (r) => r.length === 361);
    await new Promise((r) => setTimeout(r, 1500));
    // retention removes the peer's events from before now
    const admin = kafka(stack().regions[0]!.kafkaBrokers).admin();
    await admin.connect();
    const topic = `brabant.${cluster.regions.get('vlaanderen')}.changes`;
    const offsets = await admin.fetchTopicOffsets(topic);
    await admin.deleteTopicRecords({
      topic,
      partitions: offsets.map((o) => ({ partition: o.partition, offset: o.high })),
    });
    await admin.disconnect();

    await procs.get(x.id)!.capture.kill('SIGKILL');
    await procs.get(x.id)!.apply.kill('SIGKILL');
    await replaceDataFolder(servers, 'wa-1', backup);
    const apply = cluster.apply(x);
    expect(await apply.exited).not.toBe(0);
    expect(apply.lines.join('\n')).toMatch(
      /RESTORE_TOO_OLD: the database of \S+ read \S+ partition \d+ up to offset \d+, but Kafka holds that partition only from offset \d+ on .*brabant node join \S+ --from PEER --rebuild/,
    );
  });
});
