import { describe, expect, it } from 'vitest';
import { bool, describeConfig, int, list, loadConfig, oneOf, str, url } from './config.ts';
import { BrabantError } from './errors.ts';

const spec = {
  region: str({ env: 'T_REGION', description: 'region name' }),
  port: int({ env: 'T_PORT', description: 'metrics port', default: 9400, min: 1, max: 65535 }),
  verbose: bool({ env: 'T_VERBOSE', description: 'more logs', default: false }),
  mode: oneOf({
    env: 'T_MODE',
    description: 'kafka mode',
    values: ['shared', 'per-region'],
    default: 'shared',
  }),
  brokers: list({ env: 'T_BROKERS', description: 'brokers', default: ['127.0.0.1:9092'] }),
  registry: url({ env: 'T_REGISTRY', description: 'registry', default: 'http://127.0.0.1:8081' }),
};

describe('loadConfig', () => {
  it('applies defaults and parses values', () => {
    const c = loadConfig(spec, {
      T_REGION: 'vlaanderen',
      T_PORT: '9500',
      T_VERBOSE: 'yes',
      T_BROKERS: 'a:1, b:2',
    });
    expect(c).toEqual({
      region: 'vlaanderen',
      port: 9500,
      verbose: true,
      mode: 'shared',
      brokers: ['a:1', 'b:2'],
      registry: 'http://127.0.0.1:8081',
    });
  });

  it('reports every bad option at once, naming the variable and what it expects', () => {
    let err: unknown;
    try {
      loadConfig(spec, { T_PORT: '70000', T_VERBOSE: 'maybe', T_MODE: 'both', T_REGISTRY: 'not a url' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BrabantError);
    const e = err as BrabantError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain('T_REGION is required');
    expect(e.message).toContain('T_PORT="70000" is out of range; expected an integer from 1 to 65535');
    expect(e.message).toContain('T_VERBOSE="maybe" is not a boolean');
    expect(e.message).toContain('T_MODE="both" is not an allowed value; expected one of shared, per-region');
    expect(e.message).toContain('T_REGISTRY="not a url" is not a URL');
  });

  it('rejects non-integers', () => {
    expect(() => loadConfig(spec, { T_REGION: 'x', T_PORT: '12.5' })).toThrow(
      /T_PORT="12.5" is not an integer/,
    );
  });

  it('documents options as a table', () => {
    const doc = describeConfig(spec);
    expect(doc).toContain('| `T_PORT` | an integer from 1 to 65535 | `9400` | metrics port |');
    expect(doc).toContain('| `T_REGION` | a non-empty string | (required) | region name |');
  });
});
