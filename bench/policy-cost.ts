/**
 * What column_lww costs (docs/policies.md): the space of its per-column versions and the time of
 * an update under it, beside row_lww, on a PostgreSQL node of its own started for the run.
 *
 *   npx tsx bench/policy-cost.ts [--rows N]      (default 100000 rows of four non-key columns)
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { initNode, startNode } from '../infra/postgres/postgres.ts';
import { freePort } from '../infra/processes.ts';
import { ensureNodeObjects } from '../services/protocol/node-schema.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '100000' } } });
const rows = Number(values.rows);
if (!Number.isInteger(rows) || rows < 1)
  throw new Error(`--rows must be a positive integer, not ${values.rows}`);

const dir = mkdtempSync(join(tmpdir(), 'brabant-policy-cost-'));
const spec = {
  name: 'policy-cost',
  port: await freePort(),
  dataDir: join(dir, 'data'),
  logFile: join(dir, 'pg.log'),
};
initNode(spec);
const node = await startNode(spec);
const db = new pg.Client({ connectionString: node.url });
await db.connect();
try {
  await ensureNodeObjects(db);
  await db.query('create table acct (id int primary key, a int, b int, c text, d text)');
  await db.query(`insert into acct select g, g, g, 'c' || g, 'd' || g from generate_series(1, $1::int) g`, [
    rows,
  ]);
  const one = async (sql: string) => (await db.query(sql)).rows[0] as Record<string, string>;
  const timed = async (sql: string) => {
    const t = process.hrtime.bigint();
    await db.query(sql);
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  const table = await one(`select pg_total_relation_size('acct') as bytes`);
  const rowLww = await timed('update acct set a = a + 1');
  const setPolicy = await timed(`select brabant.set_conflict_policy('acct', 'column_lww')`);
  await db.query('vacuum full brabant.column_versions');
  await db.query('vacuum full acct');
  const versions = await one(
    `select pg_total_relation_size('brabant.column_versions') as bytes, count(*) as n from brabant.column_versions`,
  );
  const columnLww = await timed('update acct set a = a + 1');
  const mb = (b: string) => (Number(b) / 1024 / 1024).toFixed(1);
  console.log(
    `table ${rows} rows: ${mb(table.bytes!)} MB; column_lww versions: ${versions.n} rows, ${mb(versions.bytes!)} MB, ` +
      `${Math.round(Number(versions.bytes) / Number(versions.n))} bytes each; setting the policy on the rows there: ${Math.round(setPolicy)} ms`,
  );
  console.log(
    `UPDATE of one column of every row: row_lww ${Math.round(rowLww)} ms, column_lww ${Math.round(columnLww)} ms (${(columnLww / rowLww).toFixed(1)}×)`,
  );
} finally {
  await db.end();
  await node.process.stop();
}
