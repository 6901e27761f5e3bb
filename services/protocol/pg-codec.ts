/**
 * What every PostgreSQL ⇄ Avro value codec is (pure): the Avro type of a non-null value, and the
 * conversions between PostgreSQL's text form and the Avro value. Shared by the codec modules.
 */

export type AvroSchema = string | Record<string, unknown> | AvroSchema[];

export interface Codec {
  /** Avro type of a non-null value. */
  readonly avro: AvroSchema;
  /**
   * The field's union also has a string branch, used for values this Avro type cannot hold, or
   * that standard clients cannot turn into their language's types (numeric NaN, multi-dimensional
   * arrays, dates outside years 1–9999, …): `fromText` then throws TextForm.
   */
  readonly textFallback?: boolean;
  /** Name of the union branch when wrapped (avsc wrapped unions). */
  readonly branch: string;
  fromText(text: string): unknown;
  toText(value: unknown): string;
}

/** A text form a codec cannot read: a data error (never retriable), see valueError(). */
export class ValueError extends Error {}

/** Signals a value that must travel in the union's string branch (see Codec.textFallback). */
export class TextForm extends Error {
  constructor(readonly text: string) {
    super('value travels in its text form');
  }
}
