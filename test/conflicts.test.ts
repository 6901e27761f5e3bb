/**
 * Every conflict kind, produced on purpose: Wallonie's apply is stopped while both nodes write,
 * in a chosen order, then it catches up. Each conflict must show up in brabant.conflicts and on
 * the brabant.conflicts topic with the expected resolution; rows that cannot be applied go to the
 * dead-letter topic and the stream goes on; so does a poison message.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, tableRows, waitConverged } from './support/pair.ts';
import { kafka, region, stack, uniqueName } from './support/stack.ts';
import { readTopic } from './support/topic.ts';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

const COMMON = `
  create table c (id int primary key, v text);
  create table f (id int primary key, v text, n int);
  alter table f replica identity full;
  create table u (id int primary key, email text unique);`;

async function readJsonTopic(
  topic: string,
  brokers: string[],
  want: (xs: Record<string, unknown>[]) => boolean,
): Promise<Record<string, unknown>[]> {
  const consumer = kafka(brokers).consumer({
    groupId: uniqueName('read'),
    readUncommitted: false,
    maxWaitTimeInMs: 100,
  });
  const out: Record<string, unknown>[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`${topic}: wanted messages not seen; got ${out.length}`)),
      60_000,
    );
    void consumer.run({
      eachMessage: async ({ message }) => {
        let value: Record<string, unknown>;
        try {
          value = JSON.parse(message.value!.toString());
        } catch {
          value = { raw: message.value!.toString('hex') };
        }
        const headers = Object.fromEntries(
          Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]),
        );
        out.push({ ...value, headers, key: message.key?.toString() });
        if (want(out)) {
          clearTimeout(t);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return out;
}

describe('conflicts', () => {
  it('produces every conflict kind on purpose, logs it, and resolves it last-writer-wins', async () => {
    pair = await replicationPair(COMMON);
    const { vl, wa } = pair;
    // tables whose shape differs between the nodes, or that exist on one only
    await vl.client.query(
      'create table cols (id int primary key, a text, b text); create table only_vl (id int primary key)',
    );
    await wa.client.query('create table cols (id int primary key, a text, c text)');
    await pair.capture(vl).waitForLog(/capture session starting/);
    const apply = pair.apply(wa);
    await apply.waitForLog(/apply session running/);
    // phase 1: common rows on both
    await vl.client.query(`insert into c select g, 'seed' from generate_series(10, 19) g`);
    await vl.client.query(`insert into f values (1, 'x', 1)`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 10);
    await waitConverged(pair.sides, 'f', (r) => r.length === 1);
    await apply.kill('SIGTERM');

    // phase 2: Wallonie's apply is away; each pair of writes is ordered on purpose (first, then second)
    const run = async (first: [typeof vl, string], second: [typeof vl, string]) => {
      await first[0].client.query(first[1]);
      await second[0].client.query(second[1]);
    };
    await run([vl, `insert into c values (1, 'vl older')`], [wa, `insert into c values (1, 'wa newer')`]); // insert_exists, keep_local
    await run([wa, `insert into c values (2, 'wa older')`], [vl, `insert into c values (2, 'vl newer')`]); // insert_exists, apply_remote
    await run(
      [wa, `update c set v = 'wa older' where id = 10`],
      [vl, `update c set v = 'vl newer' where id = 10`],
    ); // update_origin_change, apply_remote
    await run(
      [vl, `update c set v = 'vl older' where id = 11`],
      [wa, `update c set v = 'wa newer' where id = 11`],
    ); // update_origin_change, keep_local
    await run([wa, 'delete from c where id = 12'], [vl, `update c set v = 'vl newer' where id = 12`]); // update_missing, apply_remote
    await run([vl, `update c set v = 'vl older' where id = 13`], [wa, 'delete from c where id = 13']); // update_recently_deleted
    await run([wa, 'delete from c where id = 14'], [vl, 'delete from c where id = 14']); // delete_missing
    await run([vl, 'delete from c where id = 15'], [wa, `update c set v = 'wa newer' where id = 15`]); // delete_recently_updated
    await wa.client.query(`update f set n = 2 where id = 1`);
    await vl.client.query(`update f set v = 'y' where id = 1`); // update_differing: its old row (1,'x',1) is not Wallonie's (1,'x',2)
    await wa.client.query(`insert into u values (1, 'a@example.org')`);
    await vl.client.query(`insert into u values (2, 'a@example.org')`); // multiple_unique_conflicts (another unique key)
    await vl.client.query(`insert into cols values (1, 'a', 'b')`); // source_column_missing (b), target_column_missing (c)
    await vl.client.query('insert into only_vl values (1)'); // target_table_missing
    await vl.client.query(`insert into c values (99, 'after everything')`); // the stream goes on

    await pair.apply(wa).waitForLog(/apply session running/);
    const expected = [
      ['insert_exists', 'keep_local', 'public.c'],
      ['insert_exists', 'apply_remote', 'public.c'],
      ['update_origin_change', 'apply_remote', 'public.c'],
      ['update_origin_change', 'keep_local', 'public.c'],
      ['update_missing', 'apply_remote', 'public.c'],
      ['update_recently_deleted', 'keep_local', 'public.c'],
      ['delete_missing', 'skip', 'public.c'],
      ['delete_recently_updated', 'keep_local', 'public.c'],
      ['update_differing', 'apply_remote', 'public.f'],
      ['multiple_unique_conflicts', 'skip', 'public.u'],
      ['source_column_missing', 'skip', 'public.cols'],
      ['target_column_missing', 'skip', 'public.cols'],
      ['target_table_missing', 'skip', 'public.only_vl'],
    ];
    const deadline = Date.now() + 60_000;
    let logged: {
      kind: string;
      resolution: string;
      table_name: string;
      local_node: string | null;
      remote_node: string;
      key: unknown;
    }[] = [];
    while (Date.now() < deadline) {
      logged = (
        await wa.client.query(
          'select kind, resolution, table_name, local_node, remote_node, key from brabant.conflicts order by id',
        )
      ).rows;
      if (
        logged.length >= expected.length &&
        (await tableRows(wa.client, 'c')).some((r) => r.includes('after everything'))
      )
        break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(logged.map((l) => [l.kind, l.resolution, l.table_name])).toEqual(expected);
    expect(logged[0]).toMatchObject({
      local_node: wa.names.nodeId,
      remote_node: vl.names.nodeId,
      key: { id: '1' },
    });

    // the resolutions: newest write per row
    const c = Object.fromEntries(
      (await wa.client.query<{ id: number; v: string }>('select id, v from c order by id')).rows.map((r) => [
        r.id,
        r.v,
      ]),
    );
    expect(c).toMatchObject({
      1: 'wa newer',
      2: 'vl newer',
      10: 'vl newer',
      11: 'wa newer',
      12: 'vl newer',
      15: 'wa newer',
      99: 'after everything',
    });
    expect(c[13]).toBeUndefined();
    expect(c[14]).toBeUndefined();
    expect((await wa.client.query('select v, n from f')).rows).toEqual([{ v: 'y', n: 1 }]);
    expect((await wa.client.query('select id from u order by id')).rows).toEqual([{ id: 1 }]);
    expect((await wa.client.query('select id, a, c from cols')).rows).toEqual([{ id: 1, a: 'a', c: null }]);

    // the same conflicts on the topic, and the rows that could not be applied in the dead-letter topic
    const brokers = region('wallonie').kafkaBrokers;
    const onTopic = await readJsonTopic(
      'brabant.conflicts',
      brokers,
      (xs) => xs.filter((x) => x.node === wa.names.nodeId).length >= expected.length,
    );
    expect(
      onTopic.filter((x) => x.node === wa.names.nodeId).map((x) => [x.kind, x.resolution, x.table]),
    ).toEqual(expected);
    const dead = await readJsonTopic(
      'brabant.deadletter',
      brokers,
      (xs) =>
        xs.filter((x) => (x.headers as Record<string, string>)['brabant.target-node'] === wa.names.nodeId)
          .length >= 2,
    );
    const mine = dead.filter(
      (x) => (x.headers as Record<string, string>)['brabant.target-node'] === wa.names.nodeId,
    );
    expect(
      mine.map((x) => [x.table, (x.headers as Record<string, string>)['brabant.reason']!.split(':')[0]]),
    ).toEqual([
      ['u', 'unique violation'],
      ['only_vl', `table public.only_vl does not exist on ${wa.names.nodeId}`],
    ]);
    expect(mine[0]).toMatchObject({
      op: 'INSERT',
      after: { id: '2', email: 'a@example.org' },
      origin: { node: vl.names.nodeId },
    });
  });

  it('sends a poison message to the dead-letter topic with its raw bytes and goes on', async () => {
    pair = await replicationPair('create table c (id int primary key, v text)');
    const { vl, wa } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    await pair.apply(wa).waitForLog(/apply session running/);
    await vl.client.query(`insert into c values (1, 'before')`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 1);
    // a real schema id with a body that is not that schema's (an unknown id is not poison: the
    // stream waits for the registry instead, see test/recovery-unknown-schema.test.ts)
    const [first] = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      vl.names.topic,
      (es) => es.length > 0,
    );
    const corrupt = Buffer.alloc(9, 0xff);
    corrupt[0] = 0;
    corrupt.writeInt32BE(first!.schemaId, 1);
    const producer = kafka(region('vlaanderen').kafkaBrokers).producer();
    await producer.connect();
    await producer.send({
      topic: vl.names.topic,
      messages: [
        { key: 'some-node', value: Buffer.from('not avro at all') },
        { key: 'some-node', value: corrupt },
      ],
    });
    await producer.disconnect();
    await vl.client.query(`insert into c values (2, 'after')`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 2);
    const dead = await readJsonTopic(
      'brabant.deadletter',
      region('wallonie').kafkaBrokers,
      (xs) =>
        xs.filter(
          (x) =>
            (x.headers as Record<string, string>)['brabant.source-topic'] === vl.names.topic &&
            (x.headers as Record<string, string>)['brabant.target-node'] === wa.names.nodeId,
        ).length >= 2,
    );
    const mine = dead.filter(
      (x) =>
        (x.headers as Record<string, string>)['brabant.source-topic'] === vl.names.topic &&
        (x.headers as Record<string, string>)['brabant.target-node'] === wa.names.nodeId,
    );
    expect(mine.map((x) => (x.headers as Record<string, string>)['brabant.reason'])).toEqual([
      'message starts with byte 110, not the Confluent magic byte 0',
      expect.stringMatching(new RegExp(`^body does not match schema id ${first!.schemaId}: `)),
    ]);
    expect(mine[0]).toMatchObject({ raw: Buffer.from('not avro at all').toString('hex'), key: 'some-node' });
  });
});
