/**
 * PostgreSQL column types → Avro types, and PostgreSQL text form ⇄ Avro value (pure).
 *
 * Capture reads values in their text form (the replication connection runs with DateStyle=ISO,
 * TimeZone=UTC, IntervalStyle=iso_8601, extra_float_digits=3, bytea_output=hex) and turns them
 * into Avro values; apply turns Avro values back into text for PostgreSQL to parse. Types with an
 * Avro logical type use it; a type without a mapping is carried as its text form and the field
 * says so (`"brabant.textForm": true`). A value that its Avro type cannot hold, or that standard
 * clients cannot turn into their language's types, travels in the field's string branch as its
 * text form (numeric NaN, dates outside years 1–9999, ±infinity, `24:00:00`: pg-datetime.ts).
 */
import { BrabantError } from '../runtime/errors.ts';
import { formatArrayText, parseArrayText } from './pg-array-text.ts';
import { type AvroSchema, type Codec, TextForm, ValueError } from './pg-codec.ts';
import { date, time, timestamp } from './pg-datetime.ts';

export { type AvroSchema, type Codec, formatArrayText, parseArrayText, TextForm, ValueError };

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
  /** pg_type.typdelim: what separates this type's values in an array's text form (`,` if absent). */
  delimiter?: string;
  /** Element type of an array type. */
  elem?: PgTypeInfo;
  /** Base type of a domain. */
  base?: PgTypeInfo;
  enumLabels?: string[];
}

const INT_MAX = 2147483647;
const INT_MIN = -2147483648;

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
      if (Number.isNaN(n) || t.trim() === '') bad(avro, t);
      return n;
    },
    toText: (v) => {
      const n = v as number;
      if (Number.isNaN(n)) return 'NaN';
      if (n === Number.POSITIVE_INFINITY) return 'Infinity';
      if (n === Number.NEGATIVE_INFINITY) return '-Infinity';
      // String(-0) is "0": the sign of a negative zero is part of the value (1/x differs).
      if (Object.is(n, -0)) return '-0';
      return avro === 'float' ? shortestFloat32(n) : String(n);
    },
  };
}

/** The shortest decimal that reads back as the same float32 (what PostgreSQL prints for real). */
function shortestFloat32(n: number): string {
  for (let digits = 1; digits <= 9; digits++) {
    const s = n.toPrecision(digits);
    if (Math.fround(Number(s)) === n) return String(Number(s));
  }
  return String(n);
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

/**
 * Arrays: an Avro array of nullable elements; a value that is not a plain one-dimensional array
 * (several dimensions, explicit bounds), or one with an element its type sends as text, travels
 * as its text form in the union's string branch. A delimiter other than `,` (box) is written into
 * the schema (`brabant.delimiter`) so that readers rebuild the text form with it.
 */
function array(elem: Codec, pgType: string, delimiter: string): Codec {
  const item = ['null', elem.avro];
  return {
    avro: {
      type: 'array',
      items: item,
      'brabant.pgType': pgType,
      ...(delimiter === ',' ? {} : { 'brabant.delimiter': delimiter }),
    },
    branch: 'array',
    textFallback: true,
    fromText: (t) => {
      const items = parseArrayText(t, delimiter);
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
      return formatArrayText(
        items.map((x) => (x === null ? null : elem.toText(Object.values(x)[0]))),
        delimiter,
      );
    },
  };
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
    return array(elemCodec, qualified(type), delimiterOf(type.elem));
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

/** The array delimiter of a type (a domain's is its base type's, as CREATE DOMAIN copies it). */
function delimiterOf(t: PgTypeInfo): string {
  return t.delimiter ?? (t.typtype === 'd' && t.base ? delimiterOf(t.base) : ',');
}

function qualified(t: PgTypeInfo): string {
  return t.schema === 'pg_catalog' ? t.name : `${t.schema}.${t.name}`;
}

/** Wraps a ValueError into the typed error capture reports (table, column, value). */
export function valueError(table: string, column: string, err: unknown): BrabantError | undefined {
  if (!(err instanceof ValueError)) return undefined;
  return new BrabantError('VALUE_UNREPRESENTABLE', `${table}.${column}: ${err.message}`);
}

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
    'brabant.delimiter'?: string;
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
    return array(codecFromAvro(items), 'array', s['brabant.delimiter'] ?? ',');
  }
  return codecFromAvro(s.type);
}
