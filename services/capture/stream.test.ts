import { describe, expect, it } from 'vitest';
import { BrabantError } from '../runtime/errors.ts';
import { classifyPipelineError } from './stream.ts';

describe('classifyPipelineError', () => {
  it('keeps typed errors, retries a lost node connection, and stops on anything else instead of retrying it forever', () => {
    const typed = new BrabantError('REGISTRY_ERROR', 'down', { retriable: true });
    expect(classifyPipelineError(typed)).toBe(typed);
    for (const code of ['08006', '57P01', '53300', 'ECONNRESET'])
      expect(classifyPipelineError(Object.assign(new Error('gone'), { code }))).toMatchObject({
        code: 'SOURCE_UNAVAILABLE',
        retriable: true,
      });
    expect(classifyPipelineError(new Error('Connection terminated unexpectedly'))).toMatchObject({
      retriable: true,
    });
    // e.g. what a date in year 294276 once threw: a data or code error, the same on every retry
    expect(classifyPipelineError(new RangeError('value out of range'))).toMatchObject({
      code: 'INTERNAL_ERROR',
      retriable: false,
      message: expect.stringMatching(/this is a bug in Brabant: report it/),
    });
    expect(classifyPipelineError(Object.assign(new Error('syntax'), { code: '42601' }))).toMatchObject({
      code: 'INTERNAL_ERROR',
      retriable: false,
    });
  });
});
