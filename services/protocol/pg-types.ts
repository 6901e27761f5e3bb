/**
 * PostgreSQL column types → Avro types, and PostgreSQL text form ⇄ Avro value (pure).
 *
 * Capture reads values in their text form (the replication connection runs with DateStyle=ISO,
 * TimeZone=UTC, IntervalStyle=iso_8601, extra_float_digits=3, bytea_output=hex) and turns them
 * into Avro values; apply turns Avro values back into text for PostgreSQL to parse. Types with an
 * Avro logical type use it; a type without a mapping is carried as its text form and the field
 * says so (`"brabant.textForm": true`). Infinite dates and timestamps map to the int/long extremes.
 */
import { BrabantError } from '../runtime/errors.ts';

export interface PgTypeInfo {
  oid: number;
  schema: string;
  name: string;
  /** pg_type.typtype: b base, e enum, d domain, c composite, r range, m multirange, p pseudo. */
  typtype: string;
  /** pg_type.typcategory: A for arrays. */
  category: string;
  /** Variable length (typlen = -1): may be TOASTed, so may arrive as "unchanged". */
  varlena: boolean;
  /** Element type of an array type. */
  elem?: PgTypeInfo;
  /** Base type of a domain. */
  base?: PgTypeInfo;
  enumLabels?: string[];
}

export type AvroSchema = string | Record<string, unknown> | AvroSchema[];

export interface Codec {
  /** Avro type of a non-null value. */
  readonly avro: AvroSchema;
  /**
   * The field's union also has a string branch, used for values this Avro type cannot hold
   * (numeric NaN/Infinity in a decimal, multi-dimensional arrays): `fromText` then throws TextForm.
   */
  readonly textFallback?: boolean;
  /** Name of the union branch when wrapped (avsc wrapped unions). */
  readonly branch: string;
  fromText(text: string): unknown;
  toText(value: unknown): string;
}

const INT_MAX = 2147483647;
const INT_MIN = -2147483648;
const LONG_MAX = 9223372036854775807n;
const LONG_MIN = -9223372036854775808n;
const MICROS_PER_DAY = 86_400_000_000n;

class ValueError extends Error {}

function bad(type: string, text: string): never {
  throw new ValueError(
    `'${text.length > 60 ? `${text.slice(0, 60)}…` : text}' is not a valid ${type} text form`,
  );
}

const boolean: Codec = {
  avro: 'boolean',
  branch: 'boolean',
  fromText: (t) => (t === 't' ? true : t === 'f' ? false : bad('boolean', t)),
  toText: (v) => (v ? 't' : 'f'),
};

const int: Codec = {
  avro: 'int',
  branch: 'int',
  fromText: (t) => {
    const n = Number(t);
    if (!Number.isInteger(n) || n > INT_MAX || n < INT_MIN) bad('integer', t);
    return n;
  },
  toText: (v) => String(v),
};

const long: Codec = {
  avro: 'long',
  branch: 'long',
  fromText: (t) => {
    if (!/^-?\d+$/.test(t)) bad('bigint', t);
    return BigInt(t);
  },
  toText: (v) => String(v),
};

function floating(avro: 'float' | 'double'): Codec {
  return {
    avro,
    branch: avro,
    fromText: (t) => {
      if (t === 'NaN') return Number.NaN;
      if (t === 'Infinity') return Number.POSITIVE_INFINITY;
      if (t === '-Infinity') return Number.NEGATIVE_INFINITY;
      const n = Number(t);
      if (Number.isNaN(n)) bad(avro, t);
      return n;
    },
    toText: (v) => {
      const n = v as number;
      if (Number.isNaN(n)) return 'NaN';
      if (n === Number.POSITIVE_INFINITY) return 'Infinity';
      if (n === Number.NEGATIVE_INFINITY) return '-Infinity';
      return String(n);
    },
  };
}

function text(pgType: string, extra: Record<string, unknown> = {}): Codec {
  return {
    avro: { type: 'string', 'brabant.pgType': pgType, ...extra },
    branch: 'string',
    fromText: (t) => t,
    toText: (v) => v as string,
  };
}

const bytes: Codec = {
  avro: 'bytes',
  branch: 'bytes',
  fromText: (t) => {
    if (!t.startsWith('\\x') || !/^[0-9a-fA-F]*$/.test(t.slice(2)) || t.length % 2 !== 0)
      bad('bytea (hex)', t);
    return Buffer.from(t.slice(2), 'hex');
  },
  toText: (v) => `\\x${(v as Buffer).toString('hex')}`,
};

const uuid: Codec = {
  avro: { type: 'string', logicalType: 'uuid' },
  branch: 'string',
  fromText: (t) => t,
  toText: (v) => v as string,
};

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

const DATE_RE = /^(\d{4,})-(\d{2})-(\d{2})/;

function parseDate(t: string): number {
  const m = DATE_RE.exec(t);
  if (m === null) bad('date', t);
  const bc = t.endsWith(' BC');
  const year = bc ? 1 - Number(m[1]) : Number(m[1]);
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

const date: Codec = {
  avro: { type: 'int', logicalType: 'date' },
  branch: 'int',
  fromText: (t) => (t === 'infinity' ? INT_MAX : t === '-infinity' ? INT_MIN : parseDate(t)),
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

const time: Codec = {
  avro: { type: 'long', logicalType: 'time-micros' },
  branch: 'long',
  fromText: (t) => parseTimeMicros(t, 'time'),
  toText: (v) => formatTimeMicros(v as bigint),
};

/** `YYYY-MM-DD HH:MI:SS[.ffffff][+HH[:MI[:SS]]][ BC]` (ISO DateStyle) → Unix microseconds. */
function parseTimestamp(t: string, withZone: boolean): bigint {
  if (t === 'infinity') return LONG_MAX;
  if (t === '-infinity') return LONG_MIN;
  const bc = t.endsWith(' BC');
  const body = bc ? t.slice(0, -3) : t;
  const m =
    /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(?:([+-])(\d{2})(?::(\d{2}))?(?::(\d{2}))?)?$/.exec(
      body,
    );
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

function timestamp(withZone: boolean): Codec {
  return {
    avro: { type: 'long', logicalType: withZone ? 'timestamp-micros' : 'local-timestamp-micros' },
    branch: 'long',
    fromText: (t) => parseTimestamp(t, withZone),
    toText: (v) => formatTimestamp(v as bigint, withZone),
  };
}

/** numeric(p,s) → Avro decimal (bytes, unscaled two's complement big-endian). */
function decimal(precision: number, scale: number): Codec {
  const special = ['NaN', 'Infinity', '-Infinity'];
  return {
    avro: { type: 'bytes', logicalType: 'decimal', precision, scale },
    branch: 'bytes',
    textFallback: true,
    fromText: (t) => {
      if (special.includes(t)) throw new TextForm(t);
      const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(t);
      if (m === null) bad('numeric', t);
      const fracText = (m[3] ?? '').padEnd(scale, '0');
      if (fracText.length > scale) bad(`numeric(${precision},${scale})`, t);
      let unscaled = BigInt(`${m[2]}${fracText}`);
      if (m[1] === '-') unscaled = -unscaled;
      return bigintToTwosComplement(unscaled);
    },
    toText: (v) => {
      const n = twosComplementToBigint(v as Buffer);
      const neg = n < 0n;
      const digits = (neg ? -n : n).toString().padStart(scale + 1, '0');
      const s = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
      return neg ? `-${s}` : s;
    },
  };
}

export function bigintToTwosComplement(n: bigint): Buffer {
  let hex = (n < 0n ? -n : n).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let buf = Buffer.from(hex, 'hex');
  if (n >= 0n) {
    if (buf.length === 0 || (buf[0]! & 0x80) !== 0) buf = Buffer.concat([Buffer.from([0]), buf]);
    return buf;
  }
  // negative: invert and add one over a width that keeps the sign bit
  let width = buf.length;
  if (-n > 1n << BigInt(width * 8 - 1)) width += 1;
  const value = (1n << BigInt(width * 8)) + n;
  return Buffer.from(value.toString(16).padStart(width * 2, '0'), 'hex');
}

export function twosComplementToBigint(buf: Buffer): bigint {
  if (buf.length === 0) return 0n;
  const unsigned = BigInt(`0x${buf.toString('hex')}`);
  return (buf[0]! & 0x80) !== 0 ? unsigned - (1n << BigInt(buf.length * 8)) : unsigned;
}

/** One-dimensional array text form `{a,"b c",NULL}` → items (null for NULL). */
export function parseArrayText(t: string): (string | null)[] | undefined {
  if (!t.startsWith('{') || !t.endsWith('}')) return undefined;
  const out: (string | null)[] = [];
  const body = t.slice(1, -1);
  if (body === '') return out;
  let i = 0;
  while (i <= body.length) {
    if (body[i] === '{') return undefined; // multi-dimensional
    let item: string | null;
    if (body[i] === '"') {
      let s = '';
      i++;
      while (i < body.length && body[i] !== '"') {
        if (body[i] === '\\') i++;
        s += body[i] ?? '';
        i++;
      }
      if (body[i] !== '"') return undefined;
      i++;
      item = s;
    } else {
      let j = i;
      while (j < body.length && body[j] !== ',') j++;
      const raw = body.slice(i, j);
      item = raw === 'NULL' ? null : raw;
      i = j;
    }
    out.push(item);
    if (i === body.length) break;
    if (body[i] !== ',') return undefined;
    i++;
  }
  return out;
}

export function formatArrayText(items: (string | null)[]): string {
  const quoted = items.map((v) =>
    v === null ? 'NULL' : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`,
  );
  return `{${quoted.join(',')}}`;
}

/**
 * Arrays: an Avro array of nullable elements; a value that is not a plain one-dimensional array
 * (several dimensions, explicit bounds) travels as its text form in the union's string branch.
 */
function array(elem: Codec, pgType: string): Codec {
  const item = ['null', elem.avro];
  return {
    avro: { type: 'array', items: item, 'brabant.pgType': pgType },
    branch: 'array',
    textFallback: true,
    fromText: (t) => {
      const items = parseArrayText(t);
      if (items === undefined) throw new TextForm(t);
      try {
        return items.map((v) => (v === null ? null : { [elem.branch]: elem.fromText(v) }));
      } catch (err) {
        // An element its type cannot hold (e.g. NaN in numeric(p,s)[]): the whole array goes as text.
        if (err instanceof TextForm) throw new TextForm(t);
        throw err;
      }
    },
    toText: (v) => {
      const items = v as (Record<string, unknown> | null)[];
      return formatArrayText(items.map((x) => (x === null ? null : elem.toText(Object.values(x)[0]))));
    },
  };
}

/** Signals a value that must travel in the union's string branch (see Codec.textFallback). */
export class TextForm extends Error {
  constructor(readonly text: string) {
    super('value travels in its text form');
  }
}

/** numeric typmod → (precision, scale), or undefined for unconstrained numeric or a negative scale. */
export function numericTypmod(typmod: number): { precision: number; scale: number } | undefined {
  if (typmod < 4) return undefined;
  const t = typmod - 4;
  const precision = (t >> 16) & 0xffff;
  const scale = (((t & 0x7ff) ^ 1024) - 1024) as number;
  if (scale < 0 || scale > precision) return undefined;
  return { precision, scale };
}

/** The codec for a column of this type (domains follow their base type). */
export function codecFor(type: PgTypeInfo, typmod: number): Codec {
  if (type.typtype === 'd' && type.base) return codecFor(type.base, typmod);
  if (type.category === 'A' && type.elem) {
    const elemCodec = codecFor(type.elem, typmod);
    return array(elemCodec, qualified(type));
  }
  if (type.typtype === 'e') {
    return text(qualified(type), { 'brabant.enumLabels': type.enumLabels ?? [] });
  }
  if (type.schema === 'pg_catalog') {
    switch (type.name) {
      case 'bool':
        return boolean;
      case 'int2':
      case 'int4':
        return int;
      case 'int8':
        return long;
      case 'float4':
        return floating('float');
      case 'float8':
        return floating('double');
      case 'numeric': {
        const ps = numericTypmod(typmod);
        return ps === undefined ? text('numeric') : decimal(ps.precision, ps.scale);
      }
      case 'text':
      case 'varchar':
      case 'bpchar':
      case 'name':
      case 'char':
        return text(type.name);
      case 'json':
      case 'jsonb':
        return text(type.name);
      case 'bytea':
        return bytes;
      case 'uuid':
        return uuid;
      case 'date':
        return date;
      case 'time':
        return time;
      case 'timestamp':
        return timestamp(false);
      case 'timestamptz':
        return timestamp(true);
      default:
        break;
    }
  }
  return text(qualified(type), { 'brabant.textForm': true });
}

function qualified(t: PgTypeInfo): string {
  return t.schema === 'pg_catalog' ? t.name : `${t.schema}.${t.name}`;
}

/** Wraps a ValueError into the typed error capture reports (table, column, value). */
export function valueError(table: string, column: string, err: unknown): BrabantError | undefined {
  if (!(err instanceof ValueError)) return undefined;
  return new BrabantError('VALUE_UNREPRESENTABLE', `${table}.${column}: ${err.message}`);
}

export { ValueError };

/**
 * The codec of a field from its Avro type alone (what a reader has: the writer's schema from the
 * registry). Used by apply to turn Avro values back into PostgreSQL text forms.
 */
export function codecFromAvro(schema: AvroSchema): Codec {
  if (typeof schema === 'string') {
    switch (schema) {
      case 'boolean':
        return boolean;
      case 'int':
        return int;
      case 'long':
        return long;
      case 'float':
      case 'double':
        return floating(schema);
      case 'bytes':
        return bytes;
      case 'string':
        return text('text');
      default:
        throw new ValueError(`no PostgreSQL text form for Avro type ${schema}`);
    }
  }
  if (Array.isArray(schema)) throw new ValueError('a union has no single codec');
  const s = schema as {
    type: string;
    logicalType?: string;
    precision?: number;
    scale?: number;
    items?: unknown;
  };
  switch (s.logicalType) {
    case 'date':
      return date;
    case 'time-micros':
      return time;
    case 'timestamp-micros':
      return timestamp(true);
    case 'local-timestamp-micros':
      return timestamp(false);
    case 'decimal':
      return decimal(s.precision ?? 38, s.scale ?? 0);
    case 'uuid':
      return uuid;
    default:
      break;
  }
  if (s.type === 'array') {
    const items = Array.isArray(s.items)
      ? (s.items as AvroSchema[]).find((b) => b !== 'null')
      : (s.items as AvroSchema);
    if (items === undefined) throw new ValueError('array without item type');
    return array(codecFromAvro(items), 'array');
  }
  return codecFromAvro(s.type);
}
