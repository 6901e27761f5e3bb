/**
 * The wire contract of a resync (`brabant resync NODE`): an incremental snapshot of a node's rows
 * written into its own change stream (docs/capture.md, "Resync").
 *
 * In the node's WAL (pg_logical_emit_message, transactional), per chunk of one table:
 *
 *   brabant.resync.low   {"resync","schema","name","chunk"}                    before the chunk is read
 *   brabant.resync.high  {"resync","schema","name","chunk","kind","columns","rows"}
 *                        in the transaction that reads the chunk; kind `rows` (the table's rows,
 *                        each `[versionTs, versionOrigin, value…]` in column order) or
 *                        `tombstones` (deleted keys the node remembers, each
 *                        `[versionTs, versionOrigin, keyValue…]` in key column order)
 *
 * On the change topic, capture turns a high watermark into a Control MESSAGE of the same prefix
 * (its content without the rows, with how many it sent and dropped) followed, in the same source
 * transaction, by one table record per row or tombstone the log did not change between the two
 * watermarks: an INSERT (a row) or a DELETE (a tombstone) of the table's own record schema, with
 * envelope version 2 and these headers:
 *
 *   brabant.resync        the resync's id
 *   brabant.version-ts    the row's version: unix microseconds of the commit that wrote it on its
 *                         origin (`pg_xact_commit_timestamp_origin` of its xmin), or `oldest`
 *                         when PostgreSQL no longer knows it (a frozen xmin)
 *   brabant.version-node  the node that commit came from
 *
 * A reader decides such a record by that version, not by its transaction's commit time (the
 * time of the resync). Readers of envelope 1 refuse it (ENVELOPE_UNSUPPORTED) rather than apply
 * it as a new insert.
 */
import { BrabantError } from '../runtime/errors.ts';

export const RESYNC_LOW_PREFIX = 'brabant.resync.low';
export const RESYNC_HIGH_PREFIX = 'brabant.resync.high';

/** Envelope version of resync records (a table record whose version is in its headers). */
export const RESYNC_ENVELOPE_VERSION = 2;

export const HEADER_RESYNC = 'brabant.resync';
export const HEADER_VERSION_TS = 'brabant.version-ts';
export const HEADER_VERSION_NODE = 'brabant.version-node';
const OLDEST = 'oldest';

/** What marks a resync record: the resync and the version of the row it carries. */
export interface ResyncMark {
  id: string;
  /** Unix microseconds of the row version's commit; null: oldest (PostgreSQL no longer knows it). */
  versionTs: bigint | null;
  /** Node the row version's commit came from. */
  versionNode: string;
}

export interface WatermarkBase {
  resync: string;
  schema: string;
  name: string;
  /** 0-based number of the chunk within its resync (rows and tombstones of all tables count on). */
  chunk: number;
}

export interface ResyncColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  /** Part of the replica identity, as pgoutput's Relation message flags it. */
  key: boolean;
}

/** One row or tombstone of a chunk: its version (unix micros or null, origin name or null = the node itself), then text values. */
export type ChunkEntry = [string | null, string | null, ...(string | null)[]];

export interface HighWatermark extends WatermarkBase {
  kind: 'rows' | 'tombstones';
  columns: ResyncColumn[];
  rows: ChunkEntry[];
}

export type Watermark = ({ type: 'low' } & WatermarkBase) | ({ type: 'high' } & HighWatermark);

/** A watermark message's content, or a typed error naming what is wrong (never a crash on bad bytes). */
export function parseWatermark(prefix: string, content: Buffer): Watermark {
  let v: unknown;
  try {
    v = JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw bad(prefix, `not JSON (${(err as Error).message})`);
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) throw bad(prefix, 'not a JSON object');
  const base = {
    resync: str(prefix, o, 'resync'),
    schema: str(prefix, o, 'schema'),
    name: str(prefix, o, 'name'),
    chunk: int(prefix, o, 'chunk'),
  };
  if (prefix === RESYNC_LOW_PREFIX) return { type: 'low', ...base };
  if (prefix !== RESYNC_HIGH_PREFIX) throw bad(prefix, 'not a resync watermark prefix');
  const kind = o.kind;
  if (kind !== 'rows' && kind !== 'tombstones') throw bad(prefix, `kind ${JSON.stringify(kind)}`);
  if (!Array.isArray(o.columns) || o.columns.length === 0) throw bad(prefix, 'no columns');
  const columns = o.columns.map((c: unknown, i: number): ResyncColumn => {
    const col = c as Record<string, unknown>;
    if (
      typeof col?.name !== 'string' ||
      !Number.isInteger(col.typeOid) ||
      !Number.isInteger(col.typeMod) ||
      typeof col.key !== 'boolean'
    )
      throw bad(prefix, `column ${i} is not {name, typeOid, typeMod, key}`);
    return { name: col.name, typeOid: col.typeOid as number, typeMod: col.typeMod as number, key: col.key };
  });
  const width = 2 + (kind === 'rows' ? columns.length : columns.filter((c) => c.key).length);
  if (!Array.isArray(o.rows)) throw bad(prefix, 'no rows');
  const rows = o.rows.map((r: unknown, i: number) => {
    if (!Array.isArray(r) || r.length !== width || !r.every((x) => x === null || typeof x === 'string'))
      throw bad(prefix, `row ${i} is not an array of ${width} strings or nulls`);
    if (r[0] !== null && !/^-?\d+$/.test(r[0] as string))
      throw bad(prefix, `row ${i} has version time ${JSON.stringify(r[0])}`);
    return r as ChunkEntry;
  });
  return { type: 'high', ...base, kind, columns, rows };
}

/** The content of a high watermark as capture forwards it: without its rows, with what it did with them. */
export function forwardedHighContent(w: HighWatermark, sent: number, dropped: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      resync: w.resync,
      schema: w.schema,
      name: w.name,
      chunk: w.chunk,
      kind: w.kind,
      sent,
      dropped,
    }),
  );
}

/** The headers that mark a resync record. */
export function encodeResyncHeaders(m: ResyncMark): Record<string, string> {
  return {
    [HEADER_RESYNC]: m.id,
    [HEADER_VERSION_TS]: m.versionTs === null ? OLDEST : m.versionTs.toString(),
    [HEADER_VERSION_NODE]: m.versionNode,
  };
}

type RawHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined;

function header(headers: RawHeaders, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined) return undefined;
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  return one === undefined ? undefined : one.toString();
}

/** The resync mark of a record's headers; undefined when it has none; UNDECODABLE when malformed. */
export function decodeResyncHeaders(headers: RawHeaders): ResyncMark | undefined {
  const id = header(headers, HEADER_RESYNC);
  if (id === undefined) return undefined;
  const ts = header(headers, HEADER_VERSION_TS);
  const node = header(headers, HEADER_VERSION_NODE);
  if (ts === undefined || node === undefined || node === '')
    throw new BrabantError(
      'UNDECODABLE',
      `resync record ${id} lacks its ${HEADER_VERSION_TS} or ${HEADER_VERSION_NODE} header`,
    );
  if (ts !== OLDEST && !/^-?\d+$/.test(ts))
    throw new BrabantError('UNDECODABLE', `resync record header ${HEADER_VERSION_TS}=${JSON.stringify(ts)}`);
  return { id, versionTs: ts === OLDEST ? null : BigInt(ts), versionNode: node };
}

function bad(prefix: string, what: string): BrabantError {
  return new BrabantError('UNDECODABLE', `resync watermark ${prefix}: ${what}`);
}

function str(prefix: string, o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== 'string' || v === '') throw bad(prefix, `field ${k} is not a string`);
  return v;
}

function int(prefix: string, o: Record<string, unknown>, k: string): number {
  const v = o[k];
  if (!Number.isInteger(v) || (v as number) < 0) throw bad(prefix, `field ${k} is not a whole number`);
  return v as number;
}
