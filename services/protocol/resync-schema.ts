/**
 * What a resync needs in schema `brabant` on a node (part of node-schema.ts's contract, installed
 * with it): the resyncs a node was asked for and how far each got, and the versions rows keep
 * after a peer's resync wrote them.
 *
 * Why brabant.resynced_versions: last-writer-wins reads a row's version from its xmin
 * (`pg_xact_commit_timestamp_origin`). Apply writes a resync's rows in one local transaction,
 * under the source's origin and with the resync's commit time, so their xmin would say "written
 * by the source at the time of the resync" — newer than the row really is: a peer's write made
 * between the row's original commit and the resync, still in flight, would then lose here and
 * win on the source. So apply records each such row's original version here, keyed by the xmin
 * it wrote; it holds exactly as long as that row version stands (any later write gives the row a
 * new xmin, and its own version). brabant.row_version_at() and brabant.tombstone_of() read it.
 */

export const RESYNC_SQL = `
create table if not exists brabant.resyncs (
  id text primary key,
  tables text[] not null,
  chunk_rows int not null,
  started_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  table_index int not null default 0,
  phase text not null default 'rows' check (phase in ('rows', 'tombstones')),
  last_key text[],
  chunks int not null default 0,
  rows bigint not null default 0,
  tombstones bigint not null default 0
);
comment on table brabant.resyncs is
  'Resyncs of this node (brabant resync): its rows re-emitted into its change stream, chunk by chunk. table_index, phase and last_key say where the next chunk starts: a resync that stopped goes on from there.';
create table if not exists brabant.resynced_versions (
  tbl text not null,
  key jsonb not null,
  kind text not null check (kind in ('row', 'tombstone')),
  row_xmin xid not null,
  ts int8,
  origin text,
  primary key (tbl, key, kind)
);
comment on table brabant.resynced_versions is
  'Rows and tombstones a peer''s resync wrote here: while the row (tombstone) still has the xmin row_xmin, its version is (ts, origin) — its original commit on the peer — not that of its xmin (the resync''s). ts null: oldest. Pruned with the tombstones.';
-- The version of a row whose xmin is x (looked up right after locking it: volatile, a new
-- snapshot sees a resync the lock waited for): what a resync recorded for it, else its xmin's.
create or replace function brabant.row_version_at(t text, k jsonb, x xid)
returns table (row_ts text, row_origin text)
language plpgsql volatile as $fn$
begin
  if x is null then return; end if;
  return query select e.ts::text, e.origin from brabant.resynced_versions e
    where e.tbl = t and e.key = k and e.kind = 'row' and e.row_xmin = x;
  if found then return; end if;
  return query
    select (extract(epoch from o."timestamp") * 1000000)::int8::text, n.roname::text
      from pg_xact_commit_timestamp_origin(x) o left join pg_replication_origin n on n.roident = o.roident;
end
$fn$;
`;
