import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// Every SQLSTATE the router sends or acts on is named in services/runtime/sqlstate.ts; a literal
// here would be a second, unnamed spelling of one. (Tests keep literals where they assert the wire.)
describe('the router names its SQLSTATEs', () => {
  it('has no SQLSTATE literal outside tests', () => {
    const dir = new URL('.', import.meta.url);
    const found = readdirSync(dir)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .flatMap((f) =>
        readFileSync(new URL(f, dir), 'utf8')
          .split('\n')
          .flatMap((line, i) =>
            /['"`][0-9][0-9A-Z]{4}['"`]/.test(line) ? [`${f}:${i + 1}: ${line.trim()}`] : [],
          ),
      );
    expect(found).toEqual([]);
  });
});
