import { beforeEach, describe, expect, it } from 'vitest';
import { sessionError, staleCatalog } from './cluster-reader.ts';

const gone = () =>
  Object.assign(new Error('column "n" of relation "orders" does not exist'), { code: '42703' });

describe('sessionError', () => {
  beforeEach(() => {
    staleCatalog.times = [];
  });

  it('starts a session again for a column gone under it, a few times in a while, then stops', () => {
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) {
      const e = sessionError(gone(), 'vl-1', t0 + i * 1000);
      expect(e.code).toBe('CATALOG_CHANGED');
      expect(e.retriable).toBe(true);
      expect(e.message).toContain('column "n" of relation "orders" does not exist');
    }
    const fourth = sessionError(gone(), 'vl-1', t0 + 4000);
    expect(fourth.code).toBe('CATALOG_MISMATCH');
    expect(fourth.retriable).toBe(false);
    // long after, a DDL on the node is again a reason to read the tables anew
    expect(sessionError(gone(), 'vl-1', t0 + 10 * 60_000).code).toBe('CATALOG_CHANGED');
  });

  it('stops at once on a missing object that is not a column (the error policy decides)', () => {
    const e = sessionError(
      Object.assign(new Error('permission denied for table orders'), { code: '42501' }),
      'vl-1',
    );
    expect(e.code).toBe('PERMISSION_DENIED');
    expect(e.retriable).toBe(false);
  });
});
