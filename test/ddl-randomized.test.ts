/**
 * Random DDL from one region (add, drop and rename columns; create and drop tables and indexes;
 * add enum values) interleaved with random DML from both regions, while capture and apply of
 * both nodes are killed with kill -9 at random moments: both nodes end with the same schema and
 * the same data. The seed is printed; BRABANT_DDL_SEED replays the DDL and kill schedule.
 * BRABANT_DDL_OPS sets how many DDL statements (default 40).
 */
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, type Side, tableRows } from './support/pair.ts';
import { seeded } from './support/random.ts';
import { schemaDump } from './support/schema.ts';
import type { ServiceProcess } from './support/services.ts';

const DDL_OPS = Number(process.env.BRABANT_DDL_OPS ?? 40);

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

/** The replicated tables of a node and their columns, as the node has them now. */
async function shape(c: pg.Client): Promise<Map<string, { name: string; type: string }[]>> {
  const res = await c.query<{ t: string; c: string; type: string }>(
    `select c.table_name as t, c.column_name as c, c.data_type as type from information_schema.columns c
      where c.table_schema = 'public' order by c.table_name, c.ordinal_position`,
  );
  const out = new Map<string, { name: string; type: string }[]>();
  for (const r of res.rows) out.set(r.t, [...(out.get(r.t) ?? []), { name: r.c, type: r.type }]);
  return out;
}

/** Random rows into whatever tables and columns the node has at this moment; errors from a concurrent DDL are expected. */
async function writeRandomly(side: Side, rand: (n: number) => number, stop: () => boolean): Promise<number> {
  let ok = 0;
  while (!stop()) {
    const tables = [...(await shape(side.client))];
    if (tables.length === 0) continue;
    const [table, cols] = tables[rand(tables.length)]!;
    const id = 1 + rand(40);
    const text = cols.filter((c) => c.name !== 'id' && c.type === 'text');
    const op = rand(10);
    try {
      if (op < 6 && text.length > 0) {
        const col = text[rand(text.length)]!.name;
        await side.client.query(
          `insert into "${table}" (id, "${col}") values ($1, $2) on conflict (id) do update set "${col}" = excluded."${col}"`,
          [id, `${side.names.nodeId}:${rand(1000)}`],
        );
      } else if (op < 8) await side.client.query(`delete from "${table}" where id = $1`, [id]);
      else await side.client.query(`insert into "${table}" (id) values ($1) on conflict do nothing`, [id]);
      ok++;
    } catch (err) {
      // the table or column went away under this statement (a replicated DDL): try another one
      if (!['42P01', '42703', '40P01'].includes((err as { code?: string }).code ?? '')) throw err;
    }
    await new Promise((r) => setTimeout(r, 3));
  }
  return ok;
}

/** One random DDL statement that the node accepts, given its current shape. */
function randomDdl(
  tables: Map<string, { name: string; type: string }[]>,
  rand: (n: number) => number,
  n: number,
): string {
  const names = [...tables.keys()];
  const table = names[rand(names.length)]!;
  const cols = tables.get(table)!.filter((c) => c.name !== 'id');
  switch (rand(9)) {
    case 0:
    case 1:
      return `alter table "${table}" add column c${n} text`;
    case 2:
      return cols.length > 0
        ? `alter table "${table}" drop column "${cols[rand(cols.length)]!.name}"`
        : `alter table "${table}" add column c${n} text`;
    case 3:
      return cols.length > 0
        ? `alter table "${table}" rename column "${cols[rand(cols.length)]!.name}" to r${n}`
        : `alter table "${table}" add column c${n} text`;
    case 4:
      return `create table t${n} (id int primary key, v text)`;
    case 5:
      return names.length > 1 ? `drop table "${table}"` : `create table t${n} (id int primary key, v text)`;
    case 6:
      return cols.length > 0
        ? `create index i${n} on "${table}" ("${cols[rand(cols.length)]!.name}")`
        : `comment on table "${table}" is 'n${n}'`;
    case 7:
      return `alter type mood add value 'm${n}'`;
    default:
      return `comment on table "${table}" is 'n${n}'`;
  }
}

describe('DDL replication, randomized', () => {
  it('ends with identical schemas and data after random DDL, random DML in both regions and kill -9', {
    timeout: 300_000,
  }, async () => {
    const { seed, rand } = seeded('randomized DDL', 'BRABANT_DDL_SEED');
    pair = await replicationPair(`create type mood as enum ('a');
      create table t0 (id int primary key, v text, m mood)`);
    const p = pair;
    const procs = new Map<string, ServiceProcess>();
    for (const s of p.sides) {
      procs.set(`capture:${s.names.nodeId}`, p.capture(s, { BRABANT_CAPTURE_BATCH_EVENTS: '50' }));
      procs.set(`apply:${s.names.nodeId}`, p.apply(s));
    }
    await Promise.all([...procs.values()].map((x) => x.waitForLog(/session (starting|running)/)));
    let stopping = false;
    const writers = Promise.all(
      p.sides.map((s, i) =>
        writeRandomly(s, seeded(`writer ${i}`, `BRABANT_DDL_WRITER_SEED_${i}`).rand, () => stopping),
      ),
    );
    let kills = 0;
    for (let n = 1; n <= DDL_OPS; n++) {
      const sql = randomDdl(await shape(p.vl.client), rand, n);
      await p.vl.client.query(sql).catch((err: Error) => {
        // a DDL Wallonie's replicated rows made impossible here meanwhile is fine; nothing else
        if (!/does not exist|already exists/.test(err.message)) throw new Error(`${sql}: ${err.message}`);
      });
      await new Promise((r) => setTimeout(r, 50 + rand(150)));
      if (rand(8) === 0) {
        const names = [...procs.keys()];
        const victim = names[rand(names.length)]!;
        await procs.get(victim)!.kill('SIGKILL');
        kills++;
        const [kind, nodeId] = victim.split(':') as ['capture' | 'apply', string];
        const side = p.sides.find((s) => s.names.nodeId === nodeId)!;
        procs.set(
          victim,
          kind === 'capture' ? p.capture(side, { BRABANT_CAPTURE_BATCH_EVENTS: '50' }) : p.apply(side),
        );
      }
    }
    stopping = true;
    const written = await writers;
    // quiescence: both nodes print the same schema and hold the same rows in every table
    const deadline = Date.now() + 120_000;
    let last = '';
    for (;;) {
      // a dump taken while apply still replays a DROP can fail (pg_dump reads the catalog, then
      // locks each table, and the table is gone): not quiet yet, look again
      const [a, b] = p.sides.map((s) => {
        try {
          return schemaDump(s.url);
        } catch (err) {
          return `dump failed: ${(err as Error).message}`;
        }
      });
      if (a === b && !a!.startsWith('dump failed')) {
        const tables = [...(await shape(p.vl.client)).keys()];
        const rows = await Promise.all(
          p.sides.map((s) => Promise.all(tables.map((t) => tableRows(s.client, `"${t}"`)))),
        );
        if (JSON.stringify(rows[0]) === JSON.stringify(rows[1])) {
          console.log(
            `seed ${seed}: ${DDL_OPS} DDL statements, ${written.join(' + ')} writes, ${kills} kills; ${tables.length} tables identical`,
          );
          expect(a).toBe(b);
          return;
        }
        const diff = tables.flatMap((t, i) => {
          const [x, y] = [new Set(rows[0]![i]), new Set(rows[1]![i])];
          const only = (m: Set<string>, n: Set<string>) => [...m].filter((r) => !n.has(r)).slice(0, 5);
          const [ox, oy] = [only(x, y), only(y, x)];
          return ox.length + oy.length === 0
            ? []
            : [
                `${t}: only on ${p.vl.names.nodeId} ${ox.join(' ')}; only on ${p.wa.names.nodeId} ${oy.join(' ')}`,
              ];
        });
        last = `schemas equal, rows differ:\n${diff.join('\n')}`;
      } else last = `schemas differ:\n${a}\n---\n${b}`;
      if (Date.now() > deadline) throw new Error(`seed ${seed}: did not converge: ${last}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  });
});
