/**
 * `brabant deadletters`: rows wa cannot apply (a check constraint only wa has) are listed with
 * the reason and their state; re-applying one before the cause is fixed fails and leaves it
 * open; once fixed it is re-applied through apply's normal path at its original commit time,
 * exactly once (asking again changes nothing, the origin's progress does not move back); a
 * dead letter whose row was written again meanwhile loses to that newer version (logged as
 * insert_exists → keep_local); a third is discarded; status counts what stays open.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetter } from '../services/control/deadletter-model.ts';
import type { StatusReport } from '../services/control/status-model.ts';
import { waitUntil } from './support/cli.ts';
import { createItems, type Deployment, deploy, startServices } from './support/operator.ts';

let d: Deployment;
beforeAll(async () => {
  d = await deploy('deadletters');
  await startServices(d);
}, 300_000);
afterAll(async () => {
  await d?.stop();
});

type Listed = DeadLetter & { state: string };
const list = async () =>
  (JSON.parse((await d.cli(['deadletters', '--json'])).out) as { deadLetters: Listed[] }).deadLetters;
const byKey = (all: Listed[], id: number) =>
  all.find((x) => (x.body as { key?: { id?: string } }).key?.id === String(id))!;

describe('brabant deadletters', { timeout: 240_000 }, () => {
  it('lists, re-applies once fixed (exactly once, ordered by commit time) and discards', async () => {
    const [vl, wa] = d.ids;
    await createItems(d);
    // wa alone refuses long values
    await d.sql(
      wa,
      'set brabant.ddl_replication = off; alter table items add constraint short check (length(v) < 5)',
    );
    await d.sql(vl, "insert into items values (10, 'too long 10')");
    await d.sql(vl, "insert into items values (11, 'too long 11')");
    await d.sql(vl, "insert into items values (12, 'too long 12')");
    // a newer write of row 11 that wa can take
    await d.sql(vl, "update items set v = 'ok' where id = 11");
    await d.sql(vl, "insert into items values (13, 'fine')");
    await waitUntil(
      'row 13 on wa',
      async () => (await d.sql(wa, 'select 1 from items where id = 13')).length === 1,
    );
    let letters: Listed[] = [];
    await waitUntil('three dead letters listed', async () => {
      letters = (await list()).filter((x) => x.kind === 'row');
      return letters.length === 3;
    });
    const [l10, l11, l12] = [byKey(letters, 10), byKey(letters, 11), byKey(letters, 12)];
    expect(l10).toMatchObject({
      kind: 'row',
      source: vl,
      targets: [wa],
      table: 'public.items',
      state: `${wa}: open`,
    });
    expect(l10.reason).toContain('short');
    const text = await d.cli(['deadletters']);
    expect(text.out).toContain(`${l10.id}`);
    expect(text.out).toContain('3 open of 3');

    // not fixed yet: the re-apply fails, nothing changes, it stays open
    const early = await d.cli(['deadletters', 'reapply', l10.id]);
    expect(early.code).toBe(1);
    expect(early.out).toContain(`${wa}: not re-applied:`);
    expect(early.out).toContain('short');
    expect(byKey(await list(), 10).state).toBe(`${wa}: reapply failed`);

    await d.sql(wa, 'set brabant.ddl_replication = off; alter table items drop constraint short');
    const progress = async () =>
      (
        await d.sql(
          wa,
          `select remote_lsn::text as p from pg_replication_origin_status where external_id = $1`,
          [`brabant_${vl}`],
        )
      )[0]!.p as string;
    const before = await progress();
    const ok = await d.cli(['deadletters', 'reapply', l10.id]);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toContain(
      `${wa}: re-applied INSERT of public.items {"id":"10"} at its original commit time`,
    );
    const [row] = await d.sql(
      wa,
      `select i.v, (pg_xact_commit_timestamp_origin(i.xmin)).timestamp as ts, o.roname
         from items i left join pg_replication_origin o on o.roident = (pg_xact_commit_timestamp_origin(i.xmin)).roident where i.id = 10`,
    );
    const [original] = await d.sql(
      vl,
      'select pg_xact_commit_timestamp(xmin) as ts from items where id = 10',
    );
    expect(row).toMatchObject({ v: 'too long 10', roname: `brabant_${vl}` });
    expect((row!.ts as Date).getTime()).toBe((original!.ts as Date).getTime());
    // the origin never moved back to the dead letter's position (heartbeats keep moving it on)
    const [{ forward }] = (await d.sql(wa, 'select $1::pg_lsn >= $2::pg_lsn as forward', [
      await progress(),
      before,
    ])) as [{ forward: boolean }];
    expect(forward).toBe(true);
    expect(BigInt(`0x${before.replace('/', '')}`)).toBeGreaterThan(
      BigInt(`0x${(l10.commitLsn ?? '0/0').replace('/', '')}`),
    );
    // exactly once: asking again applies nothing more
    const again = await d.cli(['deadletters', 'reapply', l10.id]);
    expect(again.out).toContain(`${wa}: already re-applied`);

    // row 11 was written again on vl after the dead-lettered insert: the newer version stays
    const older = await d.cli(['deadletters', 'reapply', l11.id]);
    expect(older.code, older.out).toBe(0);
    expect(older.out).toContain('resolved as insert_exists → keep_local');
    expect((await d.sql(wa, 'select v from items where id = 11'))[0]!.v).toBe('ok');

    const gone = await d.cli(['deadletters', 'discard', l12.id]);
    expect(gone.out).toContain(`${wa}: discarded`);
    expect((await d.sql(wa, 'select 1 from items where id = 12')).length).toBe(0);
    const after = await list();
    expect([10, 11, 12].map((k) => byKey(after, k).state)).toEqual([
      `${wa}: reapplied`,
      `${wa}: reapplied`,
      `${wa}: discarded`,
    ]);
    const open = await d.cli(['deadletters', '--open']);
    expect(open.out).not.toContain(l10.id);
    const status = JSON.parse((await d.cli(['status', '--json'])).out) as StatusReport;
    expect(status.regions.some((r) => r.deadLetters !== undefined && r.deadLetters.total >= 3)).toBe(true);
    expect(status.regions.every((r) => (r.deadLetters?.open ?? 0) === 0)).toBe(true);
  });
});
