/**
 * The error policy end to end: an error a person must fix stops apply with a message that names
 * the object and the fix (it is not retried forever); losing the node connection is retried and
 * apply goes on where it was.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ensureNodeObjects } from '../services/protocol/node-schema.ts';
import { type Pair, replicationPair, waitConverged } from './support/pair.ts';
import { uniqueName } from './support/stack.ts';

let pair: Pair | undefined;
let dropRole: (() => Promise<void>) | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
  await dropRole?.();
  dropRole = undefined;
});

const SCHEMA = 'create table c (id int primary key, v text); create table d (id int primary key, v text);';

describe('the error policy', () => {
  it('stops apply on permission denied, naming the table and the fix, after applying what it could', async () => {
    pair = await replicationPair(SCHEMA);
    const { vl, wa } = pair;
    // a role with all apply needs except INSERT on table d
    const role = uniqueName('apply_limited');
    const db = (await wa.client.query<{ d: string }>('select current_database() as d')).rows[0]!.d;
    await wa.client.query(`create role ${role} login;
      grant create on database ${db} to ${role};
      grant usage on schema public to ${role};
      grant select, insert, update, delete, truncate, trigger on c to ${role};
      grant select, update, delete, trigger on d to ${role};
      grant set on parameter session_replication_role to ${role};
      grant execute on function pg_replication_origin_create(text), pg_replication_origin_session_setup(text),
        pg_replication_origin_xact_setup(pg_lsn, timestamptz), pg_replication_origin_progress(text, boolean),
        pg_replication_origin_session_progress(boolean) to ${role};`);
    dropRole = async () => {
      const admin = pair?.wa.client ?? wa.client;
      await admin.query(`drop owned by ${role}; drop role ${role}`).catch(() => {});
    };
    // the node set up once by a superuser, and Brabant's own tables granted to the role, as
    // `brabant node init` does (docs/security.md)
    await ensureNodeObjects(wa.client);
    await wa.client.query(`grant select, insert, update, delete on all tables in schema brabant to ${role};
      grant usage on all sequences in schema brabant to ${role}`);
    const url = new URL(wa.url);
    url.username = role;
    await pair.capture(vl).waitForLog(/capture session starting/);
    const apply = pair.apply(wa, { BRABANT_PG_URL: url.toString() });
    await apply.waitForLog(/apply session running/);
    await vl.client.query(`insert into c values (1, 'a'), (2, 'b')`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 2);
    await vl.client.query(`insert into d values (1, 'not allowed')`);
    const code = await Promise.race([
      apply.exited,
      new Promise((r) => setTimeout(() => r('still running after 60 s'), 60_000)),
    ]);
    expect(code).toBe(1);
    const fatal = apply.lines.find((l) => l.startsWith('brabant apply:'));
    expect(fatal).toMatch(
      /^brabant apply: PERMISSION_DENIED: .*permission denied for table d .*grant the role/,
    );
    // it stopped: no session restarts were attempted for it
    expect(apply.lines.filter((l) => l.includes('session failed; retrying'))).toEqual([]);
  });

  it('retries when the node drops apply’s connections, and goes on where it was', async () => {
    pair = await replicationPair(SCHEMA);
    const { vl, wa } = pair;
    await pair.capture(vl).waitForLog(/capture session starting/);
    const apply = pair.apply(wa);
    await apply.waitForLog(/apply session running/);
    await vl.client.query(`insert into c select g, 'before' from generate_series(1, 100) g`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 100);
    const killed = await wa.client.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
        where application_name like $1 and datname = current_database()`,
      [`brabant-apply-${wa.names.nodeId}%`],
    );
    expect(killed.rowCount).toBeGreaterThanOrEqual(2); // the control connection and the origin's
    const retried = await apply.waitForLog(/apply session failed; retrying/);
    expect(JSON.parse(retried)).toMatchObject({ code: 'SOURCE_UNAVAILABLE' });
    await vl.client.query(`insert into c select g, 'after' from generate_series(101, 200) g`);
    await waitConverged(pair.sides, 'c', (r) => r.length === 200);
    expect(apply.lines.filter((l) => l.includes('apply session running'))).toHaveLength(2);
    expect(await Promise.race([apply.exited, new Promise((r) => setTimeout(() => r('running'), 200))])).toBe(
      'running',
    );
  });
});
