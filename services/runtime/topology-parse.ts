/**
 * The value parsers of the topology file's fields (pure): each checks one value and says what is
 * wrong with it; topology.ts reports it with the file, the line and the fix.
 */
export class FieldError extends Error {}

export type Parse = (value: unknown) => unknown;

export interface Field {
  description: string;
  /** How a good value looks, for the message. */
  expects: string;
  required: boolean;
  parse: Parse;
}

export const text =
  (pattern?: RegExp): Parse =>
  (v) => {
    if (typeof v !== 'string' && typeof v !== 'number') throw new FieldError('is not a string');
    const s = String(v).trim();
    if (s === '') throw new FieldError('is empty');
    if (pattern !== undefined && !pattern.test(s)) throw new FieldError(`'${s}' has the wrong form`);
    return s;
  };

export const urlOf =
  (protocols: string[]): Parse =>
  (v) => {
    const s = text()(v) as string;
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new FieldError(`'${s}' is not a URL`);
    }
    if (!protocols.includes(u.protocol)) throw new FieldError(`'${s}' does not start with ${protocols[0]}//`);
    return s.replace(/\/$/, '');
  };

export const HOST_PORT = /^[A-Za-z0-9_.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

export const hostPorts: Parse = (v) => {
  const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : undefined;
  if (items === undefined) throw new FieldError('is not a list');
  const out = items.map((i) => text(HOST_PORT)(i) as string);
  if (out.length === 0) throw new FieldError('is an empty list');
  return out;
};

export const port: Parse = (v) => {
  const n = typeof v === 'number' ? v : Number(String(v));
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new FieldError(`'${String(v)}' is not a port`);
  return n;
};

export const oneOf =
  (values: string[]): Parse =>
  (v) => {
    const s = text()(v) as string;
    if (!values.includes(s)) throw new FieldError(`'${s}' is not allowed`);
    return s;
  };

export const NAME = /^[a-z][a-z0-9_]*$/;
export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
