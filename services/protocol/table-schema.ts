/**
 * One Avro record schema per table version, generated from the table's shape (columns, types,
 * replica identity), and the conversion of pgoutput tuples into its Key/Row records (pure).
 */
import { createHash } from 'node:crypto';
import { BrabantError } from '../runtime/errors.ts';
import { type AvroType, avroType } from './avro.ts';
import { contractSchema, inlineShared } from './envelope.ts';
import { type Codec, codecFor, type PgTypeInfo, TextForm, valueError } from './pg-types.ts';

export interface ColumnShape {
  name: string;
  type: PgTypeInfo;
  typeMod: number;
  /** Part of the replica identity. */
  isKey: boolean;
}

export interface TableShape {
  schema: string;
  name: string;
  columns: ColumnShape[];
}

/** The text form of a column value, null, or the marker of an unchanged TOAST value. */
export const UNCHANGED: unique symbol = Symbol('unchanged');
export type TextValue = string | null | typeof UNCHANGED;

export interface TableSchema {
  shape: TableShape;
  /** Full Avro name of the record, e.g. brabant.v1.table.public.items. */
  fullName: string;
  /** Stable fingerprint of the shape: same shape, same table version. */
  fingerprint: string;
  schema: Record<string, unknown>;
  type: AvroType;
  fields: { column: ColumnShape; field: string; codec: Codec; unchangedAllowed: boolean }[];
  keyFields: { index: number; field: string; codec: Codec }[];
  /** Encode a pgoutput tuple (text forms, in column order) into a Row record. */
  row(values: TextValue[]): Record<string, unknown>;
  /** The Key record from a tuple (key columns must be present). */
  key(values: TextValue[]): Record<string, unknown>;
  /** Back from a Row record to text forms (for apply). */
  rowText(row: Record<string, unknown>): TextValue[];
}

const UNCHANGED_TYPE = {
  type: 'enum',
  name: 'Unchanged',
  namespace: 'brabant.v1',
  symbols: ['UNCHANGED_TOAST'],
};

/** Avro names are [A-Za-z_][A-Za-z0-9_]*; other characters become _, and clashes get a suffix. */
export function avroNames(names: string[]): string[] {
  const used = new Set<string>();
  return names.map((n) => {
    let base = n.replace(/[^A-Za-z0-9_]/g, '_');
    if (!/^[A-Za-z_]/.test(base)) base = `_${base}`;
    let candidate = base;
    for (let i = 2; used.has(candidate); i++) candidate = `${base}_${i}`;
    used.add(candidate);
    return candidate;
  });
}

export function recordFullName(schema: string, table: string): string {
  const [s, t] = avroNames([schema, table]);
  return `brabant.v1.table.${s}.${t}`;
}

export function shapeFingerprint(shape: TableShape): string {
  const canon = JSON.stringify([
    shape.schema,
    shape.name,
    shape.columns.map((c) => [c.name, c.type.schema, c.type.name, c.typeMod, c.isKey]),
  ]);
  return createHash('sha256').update(canon).digest('hex').slice(0, 16);
}

export function buildTableSchema(shape: TableShape): TableSchema {
  const qualified = `${shape.schema}.${shape.name}`;
  const fieldNames = avroNames(shape.columns.map((c) => c.name));
  const fields = shape.columns.map((column, i) => ({
    column,
    field: fieldNames[i]!,
    codec: codecFor(column.type, column.typeMod),
    unchangedAllowed: isToastable(column.type),
  }));
  const keyFields = fields
    .map((f, index) => ({ index, field: f.field, codec: f.codec, isKey: f.column.isKey }))
    .filter((f) => f.isKey)
    .map(({ index, field, codec }) => ({ index, field, codec }));

  let unchangedDefined = false;
  const rowFields = fields.map((f) => {
    const branches: unknown[] = ['null', f.codec.avro];
    if (f.codec.textFallback) branches.push('string');
    if (f.unchangedAllowed) {
      branches.push(unchangedDefined ? 'brabant.v1.Unchanged' : UNCHANGED_TYPE);
      unchangedDefined = true;
    }
    return {
      name: f.field,
      type: branches,
      // a column added later reads as null from older events (BACKWARD-compatible versions)
      default: null,
      'brabant.column': f.column.name,
      'brabant.pgType': `${f.column.type.schema}.${f.column.type.name}`,
    };
  });
  // Key fields are nullable with a null default: a REPLICA IDENTITY FULL key is the whole old
  // row, NULLs included, and a key added to a table later (insert-only rows before it) keeps the
  // new version compatible with the old one under the registry's BACKWARD rule.
  const keyRecord = {
    type: 'record',
    name: 'Key',
    fields: keyFields.map((k) => ({
      name: k.field,
      type: ['null', k.codec.avro, ...(k.codec.textFallback ? ['string'] : [])],
      default: null,
      'brabant.column': shape.columns[k.index]!.name,
    })),
  };
  const rowRecord = { type: 'record', name: 'Row', fields: rowFields };

  const template = contractSchema('TableChange');
  const fullName = recordFullName(shape.schema, shape.name);
  const lastDot = fullName.lastIndexOf('.');
  const schemaFields = (template.fields as { name: string; type: unknown }[]).map((f) => {
    if (f.name === 'key') return { ...f, type: ['null', keyRecord] };
    if (f.name === 'before') return { ...f, type: ['null', rowRecord] };
    if (f.name === 'after') return { ...f, type: ['null', `${fullName}.Row`] };
    return f;
  });
  // Key and Row live in the table's own namespace so two tables never clash.
  keyRecord.name = `${fullName}.Key`;
  rowRecord.name = `${fullName}.Row`;
  const schema = inlineShared({
    ...template,
    name: fullName.slice(lastDot + 1),
    namespace: fullName.slice(0, lastDot),
    doc: `Brabant change event of table ${qualified} (envelope version 1)`,
    'brabant.table': qualified,
    fields: schemaFields,
  });
  const type = avroType(schema);

  const encodeValue = (f: (typeof fields)[number], v: TextValue): unknown => {
    if (v === null) return null;
    if (v === UNCHANGED) {
      if (!f.unchangedAllowed) {
        throw new BrabantError(
          'VALUE_UNREPRESENTABLE',
          `${qualified}.${f.column.name}: unchanged TOAST marker for a non-TOASTable type`,
        );
      }
      return { 'brabant.v1.Unchanged': 'UNCHANGED_TOAST' };
    }
    try {
      return { [f.codec.branch]: f.codec.fromText(v) };
    } catch (err) {
      if (err instanceof TextForm && f.codec.textFallback) return { string: err.text };
      throw valueError(qualified, f.column.name, err) ?? err;
    }
  };

  return {
    shape,
    fullName,
    fingerprint: shapeFingerprint(shape),
    schema,
    type,
    fields,
    keyFields,
    row(values) {
      if (values.length !== fields.length) {
        throw new BrabantError(
          'VALUE_UNREPRESENTABLE',
          `${qualified}: tuple has ${values.length} column(s), the table version has ${fields.length}`,
        );
      }
      const out: Record<string, unknown> = {};
      for (let i = 0; i < fields.length; i++) out[fields[i]!.field] = encodeValue(fields[i]!, values[i]!);
      return out;
    },
    key(values) {
      const out: Record<string, unknown> = {};
      for (const k of keyFields) {
        const v = values[k.index];
        if (v === undefined || v === UNCHANGED) {
          throw new BrabantError(
            'VALUE_UNREPRESENTABLE',
            `${qualified}: key column ${shape.columns[k.index]!.name} has no value in the change`,
          );
        }
        // NULL is a legitimate key value of a REPLICA IDENTITY FULL table.
        out[k.field] = encodeValue(fields[k.index]!, v);
      }
      return out;
    },
    rowText(row) {
      return fields.map((f) => {
        const wrapped = row[f.field] as Record<string, unknown> | null;
        if (wrapped === null || wrapped === undefined) return null;
        const [branch, value] = Object.entries(wrapped)[0]!;
        if (branch === 'brabant.v1.Unchanged') return UNCHANGED;
        if (branch === 'string' && f.codec.branch !== 'string') return value as string;
        return f.codec.toText(value);
      });
    },
  };
}

/** Variable-length types may be TOASTed and then arrive as "unchanged" in updates. */
function isToastable(t: PgTypeInfo): boolean {
  if (t.typtype === 'd' && t.base) return isToastable(t.base);
  return t.varlena;
}
