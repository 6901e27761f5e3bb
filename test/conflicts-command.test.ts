/**
 * `brabant conflicts`: the conflict log of a running deployment with both row versions, the
 * resolution and the policy, in text and JSON, and each filter (--node, --table, --kind, --since).
 * The conflict is made deterministic: a row written on wa under a replication origin of the
 * test's own (capture skips such a transaction, so vl never sees it), then the same key inserted
 * on vl, which reaches wa as insert_exists.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConflictRow } from '../services/control/conflicts-commands.ts';
import { waitUntil } from './support/cli.ts';
import { createItems, type Deployment, deploy, startServices } from './support/operator.ts';

let d: Deployment;
beforeAll(async () => {
  d = await deploy('conflicts');
  await startServices(d);
}, 300_000);
afterAll(async () => {
  await d?.stop();
});

describe('brabant conflicts', { timeout: 180_000 }, () => {
  it('shows both versions, the resolution and the policy, and filters', async () => {
    const [vl, wa] = d.ids;
    await createItems(d);
    // a write of wa that is not captured (it carries an origin): vl never hears of it
    await d.sql(
      wa,
      `select pg_replication_origin_create('manual_local') where not exists (select 1 from pg_replication_origin where roname = 'manual_local');
       select pg_replication_origin_session_setup('manual_local');
       insert into items values (1, 'wa-local');`,
    );
    await d.sql(vl, "insert into items values (1, 'vl')");
    await waitUntil(
      'vl’s newer row on wa',
      async () => (await d.sql(wa, 'select v from items where id = 1'))[0]?.v === 'vl',
    );

    const json = await d.cli(['conflicts', '--node', wa, '--json']);
    expect(json.code, json.out).toBe(0);
    const rows = (JSON.parse(json.out) as { conflicts: ConflictRow[] }).conflicts;
    const c = rows.find((x) => x.kind === 'insert_exists')!;
    expect(c).toMatchObject({
      node: wa,
      table: 'public.items',
      key: { id: '1' },
      resolution: 'apply_remote',
      policy: 'row_lww',
      local: { row: { id: 1, v: 'wa-local' } },
      remote: { row: { id: '1', v: 'vl' }, node: vl },
    });
    expect(c.remote.commitLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);

    const text = await d.cli(['conflicts']);
    expect(text.code).toBe(0);
    expect(text.out).toContain(
      `on ${wa}  public.items {"id":"1"}  insert_exists → apply_remote (policy row_lww)`,
    );
    expect(text.out).toContain('local:  {"v":"wa-local","id":1}');
    expect(text.out).toContain(`remote: {"v":"vl","id":"1"}  written`);
    expect(text.out).toContain(`by ${vl} (commit `);

    const count = async (args: string[]) =>
      (JSON.parse((await d.cli(['conflicts', '--json', ...args])).out) as { conflicts: ConflictRow[] })
        .conflicts.length;
    expect(await count(['--table', 'items'])).toBeGreaterThan(0);
    expect(
      await count(['--table', 'public.items', '--kind', 'insert_exists', '--since', '1h']),
    ).toBeGreaterThan(0);
    expect(await count(['--kind', 'delete_missing'])).toBe(0);
    expect(await count(['--node', vl])).toBe(0);
    expect(await count(['--since', new Date(Date.now() + 3_600_000).toISOString()])).toBe(0);
    const bad = await d.cli(['conflicts', '--node', 'nope']);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("has no node 'nope'");
    const badSince = await d.cli(['conflicts', '--since', 'yesterday-ish']);
    expect(badSince.out).toContain('is neither a duration');
  });
});
