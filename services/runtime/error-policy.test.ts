import { describe, expect, it } from 'vitest';
import { directiveFor } from './error-policy.ts';
import { BrabantError } from './errors.ts';

const pg = (code: string, extra: Record<string, string> = {}) =>
  Object.assign(new Error(extra.message ?? `error ${code}`), { code, ...extra });
const ctx = { doing: 'applying vl-1 to wa-1' };

describe('the error policy', () => {
  // [what, error, directive kind]
  const cases: [string, unknown, string][] = [
    [
      'a connection refused (no SQLSTATE) is retried',
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      'retry',
    ],
    ['a connection closed mid-query is retried', new Error('Connection terminated unexpectedly'), 'retry'],
    ['class 08 is retried', pg('08006'), 'retry'],
    ['an administrator shutdown (57P01) is retried', pg('57P01'), 'retry'],
    ['the node starting up (57P03) is retried', pg('57P03'), 'retry'],
    ['too many connections (53300) is retried', pg('53300'), 'retry'],
    ['a canceled statement is retried', pg('57014'), 'retry'],
    ['a deadlock is applied again', pg('40P01'), 'reapply'],
    ['a serialization failure is applied again', pg('40001'), 'reapply'],
    [
      'a malformed array literal is a dead letter',
      pg('22P02', { message: 'malformed array literal: "{(1,1),(0,0)}"' }),
      'deadletter',
    ],
    ['a check violation is a dead letter', pg('23514', { constraint: 'qty_positive' }), 'deadletter'],
    [
      'a unique violation on another key is a dead letter',
      pg('23505', { constraint: 'items_email_key' }),
      'deadletter',
    ],
    ['a row too large for an index is a dead letter', pg('54000'), 'deadletter'],
    ['permission denied stops', pg('42501', { message: 'permission denied for table items' }), 'stop'],
    ['a missing function stops', pg('42883', { routine: 'brabant.expect_rows' }), 'stop'],
    ['a syntax error (a bug) stops', pg('42601'), 'stop'],
    ['an unknown SQLSTATE stops', pg('XX000'), 'stop'],
    ['a retriable Brabant error is retried', new BrabantError('KAFKA_UNAVAILABLE', 'brokers down'), 'retry'],
    ['a Brabant error that needs a person stops', new BrabantError('SLOT_LOST', 'slot gone'), 'stop'],
  ];

  it.each(cases)('%s', (_what, err, kind) => {
    expect(directiveFor(err, ctx).kind).toBe(kind);
  });

  it('applies a unique violation on the key itself again (a local insert raced apply)', () => {
    const err = pg('23505', { constraint: 'items_pkey' });
    expect(directiveFor(err, { ...ctx, ownKeyViolation: (c) => c === 'items_pkey' }).kind).toBe('reapply');
    expect(directiveFor(err, { ...ctx, ownKeyViolation: () => false }).kind).toBe('deadletter');
  });

  it('names the object and the fix when it stops', () => {
    const d = directiveFor(
      pg('42501', { message: 'permission denied for table items', table: 'items', schema: 'public' }),
      ctx,
    );
    expect(d.kind).toBe('stop');
    if (d.kind !== 'stop') return;
    expect(d.error.code).toBe('PERMISSION_DENIED');
    expect(d.error.retriable).toBe(false);
    expect(d.error.message).toMatch(
      /applying vl-1 to wa-1: permission denied for table items \(SQLSTATE 42501\) on table public.items; grant/,
    );
  });

  it('says which constraint or column a dead letter broke', () => {
    expect(directiveFor(pg('23514', { message: 'check failed', constraint: 'qty_positive' }), ctx)).toEqual({
      kind: 'deadletter',
      reason: 'check failed (constraint qty_positive) (SQLSTATE 23514)',
    });
  });

  it('wraps what it retries as SOURCE_UNAVAILABLE with the SQLSTATE', () => {
    const d = directiveFor(
      pg('57P01', { message: 'terminating connection due to administrator command' }),
      ctx,
    );
    expect(d.kind === 'retry' && d.error.code).toBe('SOURCE_UNAVAILABLE');
    expect(d.kind === 'retry' && d.error.message).toMatch(/administrator command \(SQLSTATE 57P01\)/);
  });
});
