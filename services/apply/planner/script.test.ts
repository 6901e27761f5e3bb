import { describe, expect, it } from 'vitest';
import { literal, textArrayLiteral } from './script.ts';

/** The literals as first written (regular expressions over every value): the reference. */
const literalBefore = (v: string) => `'${v.replace(/'/g, "''")}'`;
const textArrayBefore = (values: (string | null)[]) =>
  literalBefore(
    `{${values.map((v) => (v === null ? 'NULL' : `"${v.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`)).join(',')}}`,
  );

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Strings made of the characters that matter to the literals (quotes, backslashes, braces, commas) and others. */
function someStrings(n: number): (string | null)[] {
  const r = seeded(18);
  const alphabet = ['a', 'Z', '0', ' ', "'", '"', '\\', '{', '}', ',', 'é', '€', '😀', '\n', 'NULL'];
  const out: (string | null)[] = ['', 'NULL', "'", '"', '\\', '\\"', "''"];
  for (let i = 0; i < n; i++) {
    if (r() < 0.1) {
      out.push(null);
      continue;
    }
    let s = '';
    const len = Math.floor(r() * 12);
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(r() * alphabet.length)];
    out.push(s);
  }
  return out;
}

describe('SQL literals of the planners (script.ts)', () => {
  it('writes every string literal as before', () => {
    for (const v of someStrings(2000)) if (v !== null) expect(literal(v)).toBe(literalBefore(v));
  });

  it('writes every text[] literal as before: NULLs, quotes, backslashes, braces, commas, empty strings', () => {
    const values = someStrings(3000);
    for (let i = 0; i < values.length; i += 7) {
      const slice = values.slice(i, i + 1 + (i % 13));
      expect(textArrayLiteral(slice)).toBe(textArrayBefore(slice));
    }
    expect(textArrayLiteral([])).toBe("'{}'");
    expect(textArrayLiteral(['a"b', null, "it's", 'c\\d'])).toBe(`'{"a\\"b",NULL,"it''s","c\\\\d"}'`);
  });
});
