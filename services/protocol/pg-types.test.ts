import { describe, expect, it } from 'vitest';
import {
  bigintToTwosComplement,
  codecFor,
  codecFromAvro,
  formatArrayText,
  numericTypmod,
  type PgTypeInfo,
  parseArrayText,
  TextForm,
  twosComplementToBigint,
} from './pg-types.ts';

const t = (name: string, extra: Partial<PgTypeInfo> = {}): PgTypeInfo => ({
  oid: 0,
  schema: 'pg_catalog',
  name,
  typtype: 'b',
  category: 'X',
  varlena: false,
  ...extra,
});

/** text → Avro value → text gives the text back. */
function roundTrip(type: PgTypeInfo, typmod: number, text: string): unknown {
  const c = codecFor(type, typmod);
  const v = c.fromText(text);
  expect(c.toText(v)).toBe(text);
  return v;
}

describe('codecs', () => {
  it('maps scalar types to Avro types', () => {
    expect(codecFor(t('int4'), -1).avro).toBe('int');
    expect(codecFor(t('int8'), -1).avro).toBe('long');
    expect(codecFor(t('timestamptz'), -1).avro).toEqual({ type: 'long', logicalType: 'timestamp-micros' });
    expect(codecFor(t('numeric'), (10 << 16) + 2 + 4).avro).toEqual({
      type: 'bytes',
      logicalType: 'decimal',
      precision: 10,
      scale: 2,
    });
    expect(codecFor(t('numeric'), -1).avro).toMatchObject({ type: 'string', 'brabant.pgType': 'numeric' });
    expect(codecFor(t('inet'), -1).avro).toMatchObject({ type: 'string', 'brabant.textForm': true });
    const mood = t('mood', { schema: 'public', typtype: 'e', enumLabels: ['sad', 'ok'] });
    expect(codecFor(mood, -1).avro).toMatchObject({ type: 'string', 'brabant.enumLabels': ['sad', 'ok'] });
    const domain = t('posint', { schema: 'public', typtype: 'd', base: t('int4') });
    expect(codecFor(domain, -1).avro).toBe('int');
  });

  it('round-trips values through their Avro form', () => {
    expect(roundTrip(t('bool'), -1, 't')).toBe(true);
    expect(roundTrip(t('int2'), -1, '-32768')).toBe(-32768);
    expect(roundTrip(t('int8'), -1, '9223372036854775807')).toBe(9223372036854775807n);
    expect(roundTrip(t('float8'), -1, '1.5')).toBe(1.5);
    expect(Number.isNaN(roundTrip(t('float4'), -1, 'NaN'))).toBe(true);
    expect(roundTrip(t('float8'), -1, '-Infinity')).toBe(Number.NEGATIVE_INFINITY);
    expect(roundTrip(t('bytea'), -1, '\\xdeadbeef')).toEqual(Buffer.from('deadbeef', 'hex'));
    expect(roundTrip(t('date'), -1, '1970-01-02')).toBe(1);
    expect(roundTrip(t('date'), -1, '2024-02-29')).toBe(19782);
    expect(roundTrip(t('date'), -1, '0001-01-01')).toBe(-719162);
    expect(roundTrip(t('date'), -1, '9999-12-31')).toBe(2932896);
    expect(roundTrip(t('time'), -1, '13:45:07.25')).toBe(49507250000n);
    expect(roundTrip(t('timestamp'), -1, '1970-01-01 00:00:01.000001')).toBe(1000001n);
    expect(roundTrip(t('timestamptz'), -1, '2026-11-26 04:02:42.123456+00')).toBe(1795665762123456n);
    expect(roundTrip(t('timestamp'), -1, '1969-12-31 23:59:59.5')).toBe(-500000n);
    roundTrip(t('uuid'), -1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    roundTrip(t('jsonb'), -1, '{"a": [1, 2]}');
  });

  it('sends values standard clients cannot turn into their date types as text (years 1–9999, times below 24:00)', () => {
    const text = (type: string, v: string) => {
      const c = codecFor(t(type), -1);
      expect(c.textFallback, type).toBe(true);
      expect(() => c.fromText(v), `${type} ${v}`).toThrow(TextForm);
    };
    for (const v of [
      'infinity',
      '-infinity',
      '0044-03-15 BC',
      '0001-12-31 BC',
      '10000-01-01',
      '5874897-12-31',
    ])
      text('date', v);
    text('time', '24:00:00');
    for (const v of [
      'infinity',
      '-infinity',
      '0001-12-31 23:59:59.999999 BC',
      '294247-01-10 04:00:54.775807',
      '294276-12-31 23:59:59.999999',
    ])
      text('timestamp', v);
    text('timestamptz', '294276-12-31 23:59:59.999999+00');
    // the UTC instant decides: 0001-01-01 00:30 at +01 is still year 0 in UTC
    text('timestamptz', '0001-01-01 00:30:00+01');
    expect(codecFor(t('timestamptz'), -1).fromText('9999-12-31 23:59:59.999999+00')).toBe(
      253402300799999999n,
    );
    expect(codecFor(t('time'), -1).fromText('23:59:59.999999')).toBe(86399999999n);
  });

  it('still reads what earlier builds wrote: ±infinity as the int/long extremes, BC and late dates', () => {
    const date = codecFromAvro({ type: 'int', logicalType: 'date' });
    expect(date.toText(2147483647)).toBe('infinity');
    expect(date.toText(-2147483648)).toBe('-infinity');
    expect(date.toText(-735000)).toMatch(/ BC$/);
    const ts = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });
    expect(ts.toText(9223372036854775807n)).toBe('infinity');
    expect(ts.toText(-9223372036854775808n)).toBe('-infinity');
  });

  it('keeps the sign of -0 and prints real values in their shortest form', () => {
    for (const type of ['float4', 'float8']) {
      const c = codecFor(t(type), -1);
      expect(Object.is(c.fromText('-0'), -0)).toBe(true);
      expect(c.toText(-0)).toBe('-0');
    }
    const real = codecFor(t('float4'), -1);
    // what an Avro float holds after 1.1 went through it
    expect(real.toText(Math.fround(1.1))).toBe('1.1');
    expect(real.toText(Math.fround(3.4028235e38))).toBe('3.4028235e+38');
    expect(Math.fround(Number(real.toText(Math.fround(1.4e-45))))).toBe(Math.fround(1.4e-45));
    const reals = codecFor(t('_float4', { category: 'A', elem: t('float4'), varlena: true }), -1);
    expect(reals.toText(reals.fromText('{-0,0,NULL}'))).toBe('{"-0","0",NULL}');
  });

  it('reads and writes arrays with their element type’s delimiter (box uses ;)', () => {
    const box = t('box', { delimiter: ';' });
    const boxes = codecFor(t('_box', { category: 'A', elem: box, varlena: true }), -1);
    expect(boxes.avro).toMatchObject({ type: 'array', 'brabant.delimiter': ';' });
    const v = boxes.fromText('{(1,1),(0,0);(2,2),(1,1)}');
    expect(v).toEqual([{ string: '(1,1),(0,0)' }, { string: '(2,2),(1,1)' }]);
    expect(boxes.toText(v)).toBe('{"(1,1),(0,0)";"(2,2),(1,1)"}');
    // a reader knows the delimiter from the writer's schema alone
    expect(codecFromAvro(boxes.avro).toText(v)).toBe('{"(1,1),(0,0)";"(2,2),(1,1)"}');
    // a domain over box keeps box's delimiter
    const boxDomain = t('b2', { schema: 'public', typtype: 'd', base: box });
    expect(codecFor(t('_b2', { category: 'A', elem: boxDomain, varlena: true }), -1).avro).toMatchObject({
      'brabant.delimiter': ';',
    });
    expect(parseArrayText('{"a;b";c}', ';')).toEqual(['a;b', 'c']);
    // arrays of types with the usual delimiter keep their schema as before
    expect(
      codecFor(t('_int4', { category: 'A', elem: t('int4'), varlena: true }), -1).avro,
    ).not.toHaveProperty('brabant.delimiter');
  });

  it('sends an array with an element its type sends as text, as text', () => {
    const dates = codecFor(t('_date', { category: 'A', elem: t('date'), varlena: true }), -1);
    expect(dates.fromText('{2024-01-01,NULL}')).toEqual([{ int: 19723 }, null]);
    expect(() => dates.fromText('{2024-01-01,infinity}')).toThrow(TextForm);
  });

  it('reads timestamptz with any offset', () => {
    const c = codecFor(t('timestamptz'), -1);
    expect(c.fromText('1970-01-01 02:00:00+02')).toBe(0n);
    expect(c.fromText('1970-01-01 00:00:00-05:30')).toBe(19800000000n);
  });

  it('carries numeric(p,s) as decimal and special values as text', () => {
    const typmod = (12 << 16) + 3 + 4;
    expect(numericTypmod(typmod)).toEqual({ precision: 12, scale: 3 });
    const c = codecFor(t('numeric'), typmod);
    for (const v of ['0.000', '123456789.123', '-0.001', '-987.650']) expect(c.toText(c.fromText(v))).toBe(v);
    expect(c.toText(c.fromText('5'))).toBe('5.000');
    expect(() => c.fromText('NaN')).toThrow(TextForm);
    expect(() => c.fromText('1.23456')).toThrow(/not a valid numeric\(12,3\)/);
  });

  it('encodes two’s complement like Java BigInteger.toByteArray', () => {
    const cases: [bigint, string][] = [
      [0n, '00'],
      [127n, '7f'],
      [128n, '0080'],
      [-1n, 'ff'],
      [-128n, '80'],
      [-129n, 'ff7f'],
      [65535n, '00ffff'],
    ];
    for (const [n, hex] of cases) {
      expect(bigintToTwosComplement(n).toString('hex'), String(n)).toBe(hex);
      expect(twosComplementToBigint(Buffer.from(hex, 'hex'))).toBe(n);
    }
  });

  it('parses one-dimensional arrays and sends others as text', () => {
    expect(parseArrayText('{}')).toEqual([]);
    expect(parseArrayText('{1,NULL,3}')).toEqual(['1', null, '3']);
    expect(parseArrayText('{"a b","c\\"d","NULL",e}')).toEqual(['a b', 'c"d', 'NULL', 'e']);
    expect(parseArrayText('{{1,2},{3,4}}')).toBeUndefined();
    expect(formatArrayText(['a b', null, 'c"d'])).toBe('{"a b",NULL,"c\\"d"}');
    const intArray = codecFor(t('_int4', { category: 'A', elem: t('int4'), varlena: true }), -1);
    expect(intArray.fromText('{1,NULL,3}')).toEqual([{ int: 1 }, null, { int: 3 }]);
    expect(intArray.toText([{ int: 1 }, null])).toBe('{"1",NULL}');
    expect(() => intArray.fromText('[0:1]={1,2}')).toThrow(TextForm);
    expect(() => intArray.fromText('{{1},{2}}')).toThrow(TextForm);
  });

  it('refuses malformed text forms', () => {
    expect(() => codecFor(t('int4'), -1).fromText('12x')).toThrow(/not a valid integer/);
    expect(() => codecFor(t('int4'), -1).fromText('2147483648')).toThrow(/not a valid integer/);
    expect(() => codecFor(t('bool'), -1).fromText('yes')).toThrow(/not a valid boolean/);
    expect(() => codecFor(t('bytea'), -1).fromText('abc')).toThrow(/bytea/);
    expect(() => codecFor(t('timestamptz'), -1).fromText('2026-01-01 00:00:00')).toThrow(/timestamptz/);
  });
});
