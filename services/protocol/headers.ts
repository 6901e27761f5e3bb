/**
 * The Kafka record headers of a change event, for tools that do not decode Avro and for
 * capture's read-back of its last committed position: one encoder and one decoder.
 *
 *   brabant.commit-lsn  the source commit LSN in PostgreSQL's text form, e.g. `0/16B3748`
 *   brabant.index       the event's 0-based index in its source transaction, decimal
 *   brabant.envelope    the envelope version of the record, decimal
 *
 * Builds before envelope 1's header fix wrote the commit LSN as a decimal number; the decoder
 * reads both forms, so a capture upgraded in place reads back what its older build wrote.
 */
import { BrabantError } from '../runtime/errors.ts';
import { formatLsn, type Lsn, lsn, parseLsn, type StreamPosition } from './lsn.ts';

export const HEADER_COMMIT_LSN = 'brabant.commit-lsn';
export const HEADER_INDEX = 'brabant.index';
export const HEADER_ENVELOPE = 'brabant.envelope';

export type RecordHeaders = Record<string, string>;

/** The headers of an event at `position` written with envelope version `envelope`. */
export function encodeHeaders(position: StreamPosition, envelope: number): RecordHeaders {
  return {
    [HEADER_COMMIT_LSN]: formatLsn(position.commitLsn),
    [HEADER_INDEX]: String(position.index),
    [HEADER_ENVELOPE]: String(envelope),
  };
}

type RawHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined;

function header(headers: RawHeaders, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined) return undefined;
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  return one === undefined ? undefined : one.toString();
}

/** A commit LSN header value: PostgreSQL's `X/Y` form, or the decimal form of older builds. */
export function parseCommitLsnHeader(text: string): Lsn {
  if (/^\d+$/.test(text)) return lsn(BigInt(text));
  return parseLsn(text);
}

/**
 * The stream position a record's headers give, or undefined when they have none (a record not
 * written by Brabant's capture). Throws UNDECODABLE for headers that are present but malformed.
 */
export function decodePosition(headers: RawHeaders): StreamPosition | undefined {
  const commit = header(headers, HEADER_COMMIT_LSN);
  const index = header(headers, HEADER_INDEX);
  if (commit === undefined || index === undefined) return undefined;
  if (!/^\d+$/.test(index))
    throw new BrabantError(
      'UNDECODABLE',
      `record header ${HEADER_INDEX}=${JSON.stringify(index)} is not a number`,
    );
  try {
    return { commitLsn: parseCommitLsnHeader(commit), index: Number(index) };
  } catch {
    throw new BrabantError(
      'UNDECODABLE',
      `record header ${HEADER_COMMIT_LSN}=${JSON.stringify(commit)} is not an LSN`,
    );
  }
}
