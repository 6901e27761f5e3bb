import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configurationDoc } from './config-docs.ts';

describe('docs/configuration.md', () => {
  it('matches the option declarations (regenerate with `brabant config-docs > docs/configuration.md`)', () => {
    expect(readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')).toBe(
      configurationDoc(),
    );
  });
});
