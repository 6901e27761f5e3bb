/**
 * PostgreSQL's array text form (pure), one dimension: `{a,"b c",NULL}`. The element delimiter is
 * the element type's pg_type.typdelim: `,` for every built-in type but box, whose text form holds
 * commas and whose arrays use `;` (`{(1,1),(0,0);(2,2),(1,1)}`). array_out quotes an element that
 * holds the delimiter, a quote, a backslash, a brace, white space or spells NULL.
 * https://www.postgresql.org/docs/15/arrays.html#ARRAYS-IO
 */

/** Items of a one-dimensional array (null for NULL), or undefined for any other form (several dimensions, explicit bounds). */
export function parseArrayText(t: string, delimiter = ','): (string | null)[] | undefined {
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
      while (j < body.length && body[j] !== delimiter) j++;
      const raw = body.slice(i, j);
      item = raw === 'NULL' ? null : raw;
      i = j;
    }
    out.push(item);
    if (i === body.length) break;
    if (body[i] !== delimiter) return undefined;
    i++;
  }
  return out;
}

/** The array text form of items, every one quoted (array_in accepts that for every type). */
export function formatArrayText(items: (string | null)[], delimiter = ','): string {
  const quoted = items.map((v) =>
    v === null ? 'NULL' : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`,
  );
  return `{${quoted.join(delimiter)}}`;
}
