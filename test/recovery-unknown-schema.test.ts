/**
 * An unknown schema id is not poison: it means the registry is wrong or away, not the record.
 * Apply pauses that stream at the record (nothing after it applied out of order, nothing
 * skipped), says so with the id and the registry, and goes on with the other streams; only the
 * operator can tell it a record is garbage (BRABANT_APPLY_DEAD_LETTER_AT), and then nothing
 * behind it is lost.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, waitConverged } from './support/pair.ts';
import { kafka, region, stack } from './support/stack.ts';
import { readTopic } from './support/topic.ts';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

describe('a record whose schema the registry does not have', () => {
  it('pauses its stream there instead of skipping it; the other streams flow; nothing behind it is lost', async () => {
    pair = await replicationPair('create table c (id int primary key, v text)');
    const { vl, wa } = pair;
    await Promise.all([
      pair.capture(vl).waitForLog(/capture session starting/),
      pair.capture(wa).waitForLog(/capture session starting/),
    ]);
    let apply = pair.apply(wa);
    await apply.waitForLog(/apply session running/);
    const vlApply = pair.apply(vl);
    await vlApply.waitForLog(/apply session running/);
    await vl.client.query(`insert into c values (1, 'before')`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 1);

    // a well-framed record of vl-1 whose schema id the registry never gave out, in vl-1's own
    // partition, then vl-1 goes on writing
    const [event] = await readTopic(
      region('vlaanderen').kafkaBrokers,
      stack().registryUrl,
      vl.names.topic,
      (es) => es.length > 0,
    );
    const unknown = Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 1, 2, 3]);
    const producer = kafka(region('vlaanderen').kafkaBrokers).producer();
    await producer.connect();
    const [sent] = await producer.send({
      topic: vl.names.topic,
      messages: [{ key: vl.names.nodeId, value: unknown, partition: event!.partition }],
    });
    await producer.disconnect();
    const at = `${vl.names.topic}/${event!.partition}@${sent!.baseOffset}`;
    await vl.client.query(`insert into c values (2, 'behind the unknown record')`);

    const paused = JSON.parse(await apply.waitForLog(/SCHEMA_UNAVAILABLE: the schema of/));
    expect(paused).toMatchObject({ code: 'SCHEMA_UNAVAILABLE', registry: stack().registryUrl });
    expect(paused.msg).toContain(`BRABANT_APPLY_DEAD_LETTER_AT=${at}`);
    // it tries again, and does not skip: row 2 stays behind the record
    await apply.waitForLog(/"tries":2/);
    expect((await wa.client.query('select id from c order by id')).rows).toEqual([{ id: 1 }]);
    // the other stream flows meanwhile (Wallonie's writes reach Vlaanderen)
    await wa.client.query(`insert into c values (3, 'from wallonie')`);
    await waitConverged([vl], 'c', (r) => r.length === 3);
    expect(apply.lines.some((l) => l.includes('poison message sent to the dead-letter topic'))).toBe(false);

    // the operator says the record is garbage: it goes to the dead-letter topic, row 2 arrives
    await apply.kill('SIGTERM');
    apply = pair.apply(wa, { BRABANT_APPLY_DEAD_LETTER_AT: at });
    await waitConverged(pair.sides, 'c', (r) => r.length === 3);
    await apply.waitForLog(/poison message sent to the dead-letter topic/);
  });
});
