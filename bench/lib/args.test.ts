import { describe, expect, it } from 'vitest';
import { W6 } from '../w6.ts';
import { parseArgs } from './args.ts';

describe('bench options: W6 load', () => {
  it('defaults to the router test load: 8 clients, think time, the talk target', () => {
    const { opts } = parseArgs(['W6']);
    expect([opts.w6Clients, opts.w6Rate]).toEqual([8, 0]);
    const rows = W6.rowsFor!({ ...opts, outDir: '' });
    const sw = rows.find((r) => r.key === 'switchoverBlockedMs')!;
    expect(sw.target).toMatchObject({ value: 500, op: '<' });
    expect(sw.label).toContain('8 clients, 25 ms think time');
    expect(rows.find((r) => r.key === 'loadTxPerSec')!.target).toBeUndefined();
  });

  it('a paced load of 2,000 tx/s or more asks for the issue 18 target, and for the load itself', () => {
    const { opts } = parseArgs(['W6', '--w6-clients', '32', '--w6-rate', '2000']);
    expect([opts.w6Clients, opts.w6Rate]).toEqual([32, 2000]);
    const rows = W6.rowsFor!({ ...opts, outDir: '' });
    expect(rows.find((r) => r.key === 'switchoverBlockedMs')!.target).toMatchObject({ value: 200, op: '<' });
    expect(rows.find((r) => r.key === 'loadTxPerSec')!.target).toMatchObject({ value: 2000, op: '>=' });
    // as many may fail at a kill as are in flight: one per client
    expect(rows.find((r) => r.key === 'failoverFailed')!.target!.value).toBe(32);
  });

  it('refuses a rate that is not a number, naming the option', () => {
    expect(() => parseArgs(['--w6-rate', 'fast'])).toThrow(/--w6-rate wants a number, not 'fast'/);
  });
});
