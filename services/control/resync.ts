/**
 * `brabant resync NODE [--table T…]`: re-emits a node's current rows (and the deletes it still
 * remembers) into its own change stream while it keeps taking writes, chunk by chunk between a
 * low and a high watermark, so that every peer converges to it under last-writer-wins — after a
 * lost slot, or to replay tables into a new consumer. The statements are resync-plan.ts's; capture
 * turns each chunk into resync records (services/capture/resync-window.ts); apply decides each
 * by the row's original version (services/apply/resync.ts). docs/capture.md, "Resync".
 *
 * Where it got to is in brabant.resyncs on the node, written in each chunk's own transaction:
 * the same command again goes on after the last chunk written, so stopping it (or a capture
 * restart, which needs nothing: the chunks are in the WAL) loses nothing.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { REPLICATION_SESSION_OPTIONS } from '../capture/stream.ts';
import { formatLsn, type Lsn, parseLsn } from '../protocol/lsn.ts';
import { ensureNodeObjects } from '../protocol/node-schema.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import { nodeOf, readTopology } from '../runtime/topology.ts';
import type { controlConfig } from './config.ts';
import { type NodeTarget, pickNode, say, stackNodes } from './nodes.ts';
import {
  type Cursor,
  explainFailure,
  highHeader,
  lowContent,
  lowWatermarkSql,
  nextCursor,
  type Progress,
  progressLine,
  type ResyncTable,
  resyncable,
  rowsChunkSql,
  type TableFacts,
  tombstonesChunkSql,
} from './resync-plan.ts';

export interface ResyncOptions {
  config: ConfigOf<typeof controlConfig>;
  node: string | undefined;
  database: string | undefined;
  tables: string[];
  chunkRows: number;
  /** A topology file to find the node in (else the local stack's state). */
  topology: string | undefined;
  /** The logical slot of the node's capture, when the database has several. */
  slot: string | undefined;
  /** How long to wait, at the end, for capture to have sent everything to Kafka. */
  timeoutSeconds: number;
  /** Between progress lines. */
  progressMs?: number;
}

interface Run {
  id: string;
  tables: string[];
  chunk_rows: number;
  table_index: number;
  phase: 'rows' | 'tombstones';
  last_key: string[] | null;
  chunks: number;
  rows: string;
  tombstones: string;
  started_at: Date;
}

export async function resync(o: ResyncOptions): Promise<number> {
  const node = target(o);
  const db = new pg.Client({
    connectionString: node.url,
    // the text forms capture reads: values go out as pgoutput would send them
    options: REPLICATION_SESSION_OPTIONS,
    application_name: 'brabant-resync',
  });
  await db.connect().catch((err: Error) => {
    throw new BrabantError('SOURCE_UNAVAILABLE', `cannot connect to node ${node.id}: ${err.message}`, {
      cause: err,
    });
  });
  try {
    await ensureNodeObjects(db);
    const slot = await captureSlot(db, node, o.slot);
    const tables = await chooseTables(db, node, o.tables);
    await exclusive(db, node, tables);
    const run = await startOrResume(db, tables, o.chunkRows);
    if (!slot.active)
      say(
        `capture of ${node.id} is not streaming now (slot ${slot.name} is inactive): the resync goes into its stream ` +
          'and reaches Kafka when capture runs',
      );
    const lastLsn = await writeChunks(db, node, run, tables, o);
    return await waitForCapture(db, node, slot.name, lastLsn, o.timeoutSeconds);
  } catch (err) {
    throw explainFailure(err, node.id);
  } finally {
    await db.end().catch(() => {});
  }
}

function target(o: ResyncOptions): NodeTarget {
  if (o.node === undefined)
    throw new BrabantError('CONFIG_INVALID', 'say which node to resync: brabant resync NODE [--table T…]');
  const file = o.topology ?? process.env.BRABANT_TOPOLOGY;
  if (file !== undefined) {
    const n = nodeOf(readTopology(file), o.node);
    return {
      id: n.id,
      region: n.region,
      url: o.database ? withDatabase(n.postgres, o.database) : n.postgres,
    };
  }
  return pickNode(stackNodes(o.config.home, o.database ?? 'postgres').nodes, o.node);
}

/** The slot the node's capture streams from: the resync reaches Kafka once it has passed the last chunk. */
async function captureSlot(
  db: pg.Client,
  node: NodeTarget,
  wanted: string | undefined,
): Promise<{ name: string; active: boolean }> {
  const res = await db.query<{ slot_name: string; active: boolean }>(
    `select slot_name, active from pg_replication_slots
      where database = current_database() and plugin = 'pgoutput' and slot_type = 'logical' order by slot_name`,
  );
  const slots = wanted === undefined ? res.rows : res.rows.filter((s) => s.slot_name === wanted);
  if (slots.length === 1) return { name: slots[0]!.slot_name, active: slots[0]!.active };
  if (slots.length === 0)
    throw new BrabantError(
      'CONFIG_INVALID',
      wanted === undefined
        ? `node ${node.id} has no logical replication slot in this database: no capture streams it, so nothing would ` +
            'send the resync; start capture first (after SLOT_LOST: with BRABANT_CAPTURE_RECREATE_SLOT=true)'
        : `node ${node.id} has no logical slot ${wanted} in this database`,
    );
  throw new BrabantError(
    'CONFIG_INVALID',
    `node ${node.id} has several logical slots (${slots.map((s) => s.slot_name).join(', ')}): say which one its capture uses with --slot`,
  );
}

const FACTS = `
  select n.nspname as schema, c.relname as name, c.relkind::text as relkind, c.relreplident::text as replica_identity,
         coalesce((select array_agg(a.attname::text order by k.ord)
                     from pg_index i cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
                     join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                    where i.indrelid = c.oid and i.indisprimary), '{}') as primary_key,
         coalesce((select array_agg(a.attname::text order by k.ord)
                     from pg_index i cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
                     join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                    where i.indrelid = c.oid and i.indisreplident), '{}') as identity_index,
         (select json_agg(json_build_object('name', a.attname, 'typeOid', a.atttypid::int, 'typeMod', a.atttypmod,
                                            'sqlType', format_type(a.atttypid, a.atttypmod)) order by a.attnum)
            from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = '') as columns,
         exists (select 1 from pg_publication_tables pt where pt.schemaname = n.nspname and pt.tablename = c.relname) as published,
         case when p.tbl is null or (p.rows = 'row_lww' and cardinality(p.delta) = 0 and p.resolutions = '{}'::jsonb and p.custom is null)
              then null else concat_ws(' ', p.rows, nullif('delta ' || array_to_string(p.delta, ','), 'delta '),
                                       nullif(p.resolutions::text, '{}'), 'custom:' || p.custom) end as policy
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    left join brabant.policies p on p.tbl = format('%I.%I', n.nspname, c.relname)`;

interface FactRow {
  schema: string;
  name: string;
  relkind: string;
  replica_identity: string;
  primary_key: string[];
  identity_index: string[];
  columns: TableFacts['columns'];
  published: boolean;
  policy: string | null;
}

const facts = (r: FactRow): TableFacts => ({
  schema: r.schema,
  name: r.name,
  relkind: r.relkind,
  replicaIdentity: r.replica_identity,
  primaryKey: r.primary_key,
  identityIndex: r.identity_index,
  columns: r.columns ?? [],
  published: r.published,
  policy: r.policy ?? undefined,
});

/**
 * The tables named (each must be resyncable), or every replicated table that is (the others named
 * once); a partitioned table by its partitions.
 */
async function chooseTables(db: pg.Client, node: NodeTarget, named: string[]): Promise<ResyncTable[]> {
  if (named.length > 0) {
    const out: ResyncTable[] = [];
    for (const t of named) {
      const res = await db.query<FactRow>(`${FACTS} where c.oid = $1::regclass`, [t]).catch((err: Error) => {
        throw new BrabantError('CONFIG_INVALID', `no table ${t} on node ${node.id}: ${err.message}`);
      });
      const r = resyncable(facts(res.rows[0]!));
      if ('refused' in r) throw new BrabantError('CONFIG_INVALID', `cannot resync ${t}: ${r.refused}`);
      out.push(r.table);
    }
    return out;
  }
  const res = await db.query<FactRow>(
    // partitions, not their partitioned tables: pgoutput sends a partition's changes as its own
    `${FACTS} where c.relkind = 'r' and c.relpersistence = 'p'
        and n.nspname not in ('pg_catalog', 'information_schema', 'brabant') and n.nspname not like 'pg\\_%'
      order by 1, 2`,
  );
  const out: ResyncTable[] = [];
  for (const row of res.rows) {
    const r = resyncable(facts(row));
    if ('refused' in r) say(`skipping ${row.schema}.${row.name}: ${r.refused}`);
    else out.push(r.table);
  }
  if (out.length === 0)
    throw new BrabantError('CONFIG_INVALID', `node ${node.id} has no table a resync can re-send`);
  return out;
}

const nameOf = (t: ResyncTable) => `${t.schema}.${t.name}`;

/**
 * One command at a time per set of tables (a session advisory lock, released when the command
 * ends): two would both go on from the same cursor and write every chunk twice.
 */
async function exclusive(db: pg.Client, node: NodeTarget, tables: ResyncTable[]): Promise<void> {
  const r = await db.query<{ ok: boolean }>(
    `select pg_try_advisory_lock(hashtext('brabant resync'), hashtext(array_to_string($1::text[], ','))) as ok`,
    [tables.map(nameOf)],
  );
  if (!r.rows[0]!.ok)
    throw new BrabantError(
      'CONFIG_INVALID',
      `another brabant resync of ${tables.map(nameOf).join(', ')} is running on node ${node.id}: let it finish, or stop ` +
        'it and run this command again (it goes on where that one was)',
    );
}

/** The unfinished resync of these same tables (it goes on), or a new one. */
async function startOrResume(db: pg.Client, tables: ResyncTable[], chunkRows: number): Promise<Run> {
  const names = tables.map(nameOf);
  const open = await db.query<Run>(
    `select id, tables, chunk_rows, table_index, phase, last_key, chunks, rows::text, tombstones::text, started_at
       from brabant.resyncs where finished_at is null and tables = $1::text[] order by started_at desc limit 1`,
    [names],
  );
  const found = open.rows[0];
  if (found !== undefined) {
    const at = found.tables[found.table_index];
    say(
      `going on with resync ${found.id} (started ${found.started_at.toISOString()}): ${found.chunks} chunk(s) written, ` +
        `next: ${at ?? 'nothing'} (${found.phase})`,
    );
    return found;
  }
  const id = `rs-${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
  const res = await db.query<Run>(
    `insert into brabant.resyncs (id, tables, chunk_rows) values ($1, $2::text[], $3)
     returning id, tables, chunk_rows, table_index, phase, last_key, chunks, rows::text, tombstones::text, started_at`,
    [id, names, chunkRows],
  );
  say(`resync ${id}: ${names.join(', ')}, chunks of ${chunkRows} rows`);
  return res.rows[0]!;
}

/** Rows and remembered deletes of the tables still to go, roughly (for the ETA). */
async function estimate(db: pg.Client, tables: ResyncTable[]): Promise<number> {
  let total = 0;
  for (const t of tables) {
    const r = await db.query<{ n: string }>(
      `select (case when c.reltuples >= 0 then c.reltuples::int8 else (select count(*) from ${quoted(t)}) end
               + (select count(*) from brabant.tombstones where tbl = $2))::text as n
         from pg_class c where c.oid = $1::regclass`,
      [quoted(t), nameOf(t)],
    );
    total += Number(r.rows[0]?.n ?? 0);
  }
  return total;
}

const quoted = (t: ResyncTable) => `"${t.schema.replace(/"/g, '""')}"."${t.name.replace(/"/g, '""')}"`;

/**
 * One chunk: its low watermark (a transaction of its own), then, in one transaction, the chunk
 * read and written as the high watermark, and the run's cursor moved past it.
 */
async function writeChunk(db: pg.Client, run: Run, tables: ResyncTable[], c: Cursor, chunk: number) {
  const t = tables[c.ti]!;
  await db.query(lowWatermarkSql(), [lowContent(run.id, t, chunk)]);
  await db.query('begin');
  try {
    const res = await db.query<{ n: number; last_key: string[] | null; lsn: string }>(
      c.phase === 'rows' ? rowsChunkSql(t, c.key === null) : tombstonesChunkSql(t, c.key === null),
      [c.key ?? [], run.chunk_rows, nameOf(t), highHeader(run.id, t, chunk, c.phase)],
    );
    const n = res.rows[0]!.n;
    const next = nextCursor(c, n, run.chunk_rows, res.rows[0]!.last_key);
    // the last chunk finishes the run in its own transaction: a finished run is never resumed,
    // an unfinished one always has a chunk left to write
    await db.query(
      `update brabant.resyncs set table_index = $2, phase = $3, last_key = $4, chunks = chunks + 1,
              rows = rows + $5, tombstones = tombstones + $6, updated_at = now(),
              finished_at = case when $7 then now() end
        where id = $1`,
      [
        run.id,
        next.ti,
        next.phase,
        next.key,
        c.phase === 'rows' ? n : 0,
        c.phase === 'rows' ? 0 : n,
        next.ti >= tables.length,
      ],
    );
    await db.query('commit');
    return { n, next, lsn: parseLsn(res.rows[0]!.lsn) };
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw err;
  }
}

/**
 * Writes the chunks from where the run is to the end; the WAL position of the last high
 * watermark (capture has sent the resync once its slot is confirmed past it: later transactions
 * of the node may touch no replicated table, and pgoutput sends nothing of those).
 */
async function writeChunks(
  db: pg.Client,
  node: NodeTarget,
  run: Run,
  tables: ResyncTable[],
  o: ResyncOptions,
): Promise<Lsn> {
  const started = Date.now();
  const p: Progress = {
    tables: tables.length,
    tablesDone: run.table_index,
    chunks: run.chunks,
    rows: Number(run.rows),
    tombstones: Number(run.tombstones),
    estimate: Number(run.rows) + Number(run.tombstones) + (await estimate(db, tables.slice(run.table_index))),
    doneBefore: Number(run.rows) + Number(run.tombstones),
    elapsedMs: 0,
  };
  let shown = started;
  let c: Cursor = { ti: run.table_index, phase: run.phase, key: run.last_key };
  let last: Lsn | undefined;
  while (c.ti < tables.length) {
    const { n, next, lsn } = await writeChunk(db, run, tables, c, p.chunks);
    last = lsn;
    p.chunks++;
    if (c.phase === 'rows') p.rows += n;
    else p.tombstones += n;
    p.tablesDone = next.ti;
    c = next;
    const now = Date.now();
    if (now - shown >= (o.progressMs ?? 2000) || c.ti === tables.length) {
      say(progressLine({ ...p, elapsedMs: now - started }));
      shown = now;
    }
  }
  if (last === undefined)
    throw new BrabantError(
      'INTERNAL_ERROR',
      `resync ${run.id} of ${node.id} had no chunk left to write although it is not finished`,
    );
  say(
    `resync ${run.id} of ${node.id} written into its stream: ${p.chunks} chunk(s), ${p.rows.toLocaleString('en-US')} rows, ` +
      `${p.tombstones.toLocaleString('en-US')} remembered deletes`,
  );
  return last;
}

/** Until capture has confirmed the slot past the last chunk (everything is in Kafka), or the timeout. */
async function waitForCapture(
  db: pg.Client,
  node: NodeTarget,
  slot: string,
  want: Lsn,
  timeoutSeconds: number,
): Promise<number> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const r = await db.query<{ confirmed: string | null; active: boolean }>(
      'select confirmed_flush_lsn::text as confirmed, active from pg_replication_slots where slot_name = $1',
      [slot],
    );
    const confirmed = r.rows[0]?.confirmed;
    if (confirmed !== null && confirmed !== undefined && parseLsn(confirmed) >= want) {
      say(`capture of ${node.id} has sent all of it to Kafka (slot ${slot} confirmed ${confirmed})`);
      return 0;
    }
    if (Date.now() > deadline) {
      say(
        `capture of ${node.id} has not sent all of it yet (slot ${slot} at ${confirmed ?? 'none'}, the resync ends at ` +
          `${formatLsn(want)}${r.rows[0]?.active ? '' : '; capture is not running'}): it will once capture catches up`,
      );
      return 3;
    }
    await new Promise((res) => setTimeout(res, 250));
  }
}
