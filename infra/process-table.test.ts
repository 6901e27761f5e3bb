import { describe, expect, it } from 'vitest';
import { parseStat } from './process-table.ts';

// Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
// utime stime cutime cstime priority nice threads itrealvalue starttime …
const tail = (state: string, ppid: number, pgid: number, start: number) =>
  `${state} ${ppid} ${pgid} ${pgid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 ${start} 1000 10`;

describe('parseStat', () => {
  it('reads pid, state, parent, group and start time', () => {
    expect(parseStat(`4242 (postgres) ${tail('S', 1, 4242, 987654)}`)).toEqual({
      pid: 4242,
      comm: 'postgres',
      state: 'S',
      ppid: 1,
      pgid: 4242,
      startTime: 987654,
    });
  });

  it('keeps a program name with spaces and parentheses whole', () => {
    expect(parseStat(`77 (node (vitest 1)) ${tail('R', 5, 5, 12)}`)).toMatchObject({
      pid: 77,
      comm: 'node (vitest 1)',
      state: 'R',
      pgid: 5,
      startTime: 12,
    });
  });

  it('gives undefined for a line it cannot read instead of throwing', () => {
    expect(parseStat('')).toBeUndefined();
    expect(parseStat('12 (cut short')).toBeUndefined();
    expect(parseStat('12 (x) S 1')).toBeUndefined();
  });
});
