import { describe, expect, it } from 'vitest';
import { slotWarning } from './slot-watch.ts';

const MiB = 2 ** 20;

describe('the WAL a slot retains', () => {
  it('is quiet below the threshold, and with the threshold off', () => {
    expect(slotWarning({ retainedBytes: 10 * MiB, walStatus: 'reserved' }, 1024 * MiB)).toBeUndefined();
    expect(slotWarning({ retainedBytes: 5000 * MiB, walStatus: 'extended' }, 0)).toBeUndefined();
  });

  it('warns past the threshold, and louder past max_slot_wal_keep_size', () => {
    expect(slotWarning({ retainedBytes: 2048 * MiB, walStatus: 'extended' }, 1024 * MiB)).toContain(
      'holds back 2048 MiB of WAL (warning at 1024 MiB)',
    );
    expect(slotWarning({ retainedBytes: 1, walStatus: 'unreserved' }, 1024 * MiB)).toContain(
      'past max_slot_wal_keep_size',
    );
    expect(slotWarning({ retainedBytes: 1, walStatus: 'lost' }, 1024 * MiB)).toContain('SLOT_LOST');
  });
});
