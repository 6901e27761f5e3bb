/**
 * date, time, timestamp and timestamptz: PostgreSQL text form ⇄ Avro logical types (pure).
 *
 * Standard Avro clients turn these logical types into their language's date types: Confluent's
 * Python deserializer (fastavro) into datetime.date/time/datetime, which hold years 1–9999 and
 * times below 24:00:00 only; Java's logical-type conversions into java.time, where 24:00:00 does
 * not fit either. PostgreSQL holds more (4713 BC to 5874897 AD, ±infinity, `24:00:00`), and
 * timestamps past 294247 AD do not even fit in Unix microseconds. So a value inside the range
 * every such client holds travels in the logical type, and any other value travels in the field's
 * string branch as PostgreSQL's own text form (as numeric NaN does): every record stays readable
 * by every standard client, and nothing is rounded or clamped.
 *
 * Readers still accept what builds before this rule wrote: ±infinity as the int/long extremes
 * and BC or late dates in the logical type.
 */
import { type Codec, TextForm, ValueError } from './pg-codec.ts';

const INT_MAX = 2147483647;
const INT_MIN = -2147483648;
const LONG_MAX = 9223372036854775807n;
const LONG_MIN = -9223372036854775808n;
const MICROS_PER_DAY = 86_400_000_000n;

function bad(type: string, text: string): never {
  throw new ValueError(
    `'${text.length > 60 ? `${text.slice(0, 60)}…` : text}' is not a valid ${type} text form`,
  );
}

/** Proleptic Gregorian day number from 1970-01-01 (year may be ≤ 0: astronomical numbering). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(z0: number): [number, number, number] {
  const z = z0 + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365,
  );
  const y = yoe + era * 400;
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp + (mp < 10 ? 3 : -9);
  return [m <= 2 ? y + 1 : y, m, d];
}

/** Days from 1970-01-01 of the first and the last day every standard client holds (years 1–9999). */
export const FIRST_PORTABLE_DAY = daysFromCivil(1, 1, 1);
export const LAST_PORTABLE_DAY = daysFromCivil(9999, 12, 31);
const FIRST_PORTABLE_MICROS = BigInt(FIRST_PORTABLE_DAY) * MICROS_PER_DAY;
const END_PORTABLE_MICROS = BigInt(LAST_PORTABLE_DAY + 1) * MICROS_PER_DAY;

const DATE_RE = /^(\d{4,})-(\d{2})-(\d{2})( BC)?$/;

function parseDate(t: string): number {
  const m = DATE_RE.exec(t);
  if (m === null) bad('date', t);
  const year = m[4] ? 1 - Number(m[1]) : Number(m[1]);
  return daysFromCivil(year, Number(m[2]), Number(m[3]));
}

function formatDate(days: number): { text: string; bc: boolean } {
  const [y, m, d] = civilFromDays(days);
  const bc = y <= 0;
  const year = bc ? 1 - y : y;
  return {
    text: `${String(year).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`,
    bc,
  };
}

export const date: Codec = {
  avro: { type: 'int', logicalType: 'date' },
  branch: 'int',
  textFallback: true,
  fromText: (t) => {
    if (t === 'infinity' || t === '-infinity') throw new TextForm(t);
    const days = parseDate(t);
    if (days < FIRST_PORTABLE_DAY || days > LAST_PORTABLE_DAY) throw new TextForm(t);
    return days;
  },
  toText: (v) => {
    const n = v as number;
    if (n === INT_MAX) return 'infinity';
    if (n === INT_MIN) return '-infinity';
    const f = formatDate(n);
    return f.bc ? `${f.text} BC` : f.text;
  },
};

const TIME_RE = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;

function parseTimeMicros(t: string, what: string): bigint {
  const m = TIME_RE.exec(t);
  if (m === null) bad(what, t);
  const frac = BigInt((m[4] ?? '').padEnd(6, '0'));
  return ((BigInt(m[1]!) * 60n + BigInt(m[2]!)) * 60n + BigInt(m[3]!)) * 1_000_000n + frac;
}

function formatTimeMicros(us: bigint): string {
  const secs = us / 1_000_000n;
  const frac = us % 1_000_000n;
  const h = secs / 3600n;
  const mi = (secs / 60n) % 60n;
  const s = secs % 60n;
  const base = `${String(h).padStart(2, '0')}:${String(mi).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
  return frac === 0n ? base : `${base}.${String(frac).padStart(6, '0').replace(/0+$/, '')}`;
}

export const time: Codec = {
  avro: { type: 'long', logicalType: 'time-micros' },
  branch: 'long',
  textFallback: true,
  fromText: (t) => {
    const us = parseTimeMicros(t, 'time');
    // time-micros holds a time of day: 24:00:00, which PostgreSQL allows, is a day too far.
    if (us >= MICROS_PER_DAY) throw new TextForm(t);
    return us;
  },
  toText: (v) => formatTimeMicros(v as bigint),
};

const TIMESTAMP_RE =
  /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(?:([+-])(\d{2})(?::(\d{2}))?(?::(\d{2}))?)?$/;

/** `YYYY-MM-DD HH:MI:SS[.ffffff][+HH[:MI[:SS]]][ BC]` (ISO DateStyle) → Unix microseconds. */
function parseTimestamp(t: string, withZone: boolean): bigint {
  const bc = t.endsWith(' BC');
  const m = TIMESTAMP_RE.exec(bc ? t.slice(0, -3) : t);
  if (m === null || (withZone && m[5] === undefined)) bad(withZone ? 'timestamptz' : 'timestamp', t);
  const year = bc ? 1 - Number(m[1]) : Number(m[1]);
  const days = BigInt(daysFromCivil(year, Number(m[2]), Number(m[3])));
  let us = days * MICROS_PER_DAY + parseTimeMicros(m[4]!, 'timestamp');
  if (m[5] !== undefined) {
    const off = (BigInt(m[6]!) * 3600n + BigInt(m[7] ?? '0') * 60n + BigInt(m[8] ?? '0')) * 1_000_000n;
    us = m[5] === '+' ? us - off : us + off;
  }
  return us;
}

function formatTimestamp(us: bigint, withZone: boolean): string {
  if (us === LONG_MAX) return 'infinity';
  if (us === LONG_MIN) return '-infinity';
  let days = us / MICROS_PER_DAY;
  let rest = us % MICROS_PER_DAY;
  if (rest < 0n) {
    rest += MICROS_PER_DAY;
    days -= 1n;
  }
  const d = formatDate(Number(days));
  const s = `${d.text} ${formatTimeMicros(rest)}${withZone ? '+00' : ''}`;
  return d.bc ? `${s} BC` : s;
}

export function timestamp(withZone: boolean): Codec {
  return {
    avro: { type: 'long', logicalType: withZone ? 'timestamp-micros' : 'local-timestamp-micros' },
    branch: 'long',
    textFallback: true,
    fromText: (t) => {
      if (t === 'infinity' || t === '-infinity') throw new TextForm(t);
      const us = parseTimestamp(t, withZone);
      // Past 294247 AD, Unix microseconds overflow a long: PostgreSQL's range does not fit it.
      if (us < FIRST_PORTABLE_MICROS || us >= END_PORTABLE_MICROS) throw new TextForm(t);
      return us;
    },
    toText: (v) => formatTimestamp(v as bigint, withZone),
  };
}
