import { describe, expect, it } from 'vitest';
import { decideJoin, type JoinRecord, keepTocEntry, progressLine } from './join-plan.ts';

const record = (phase: JoinRecord['phase']): JoinRecord => ({
  node: 'vl-2',
  peer: 'vl-1',
  phase,
  rebuild: false,
  startedAt: '2026-12-01 10:00:00+00',
  copiedRows: 12345,
});

describe('decideJoin', () => {
  it.each([
    [undefined, 'fresh'],
    [record('copying'), 'restart'],
    [record('copied'), 'catch-up'],
    [record('done'), 'joined'],
  ] as const)('%o → %s', (existing, kind) => {
    expect(decideJoin(existing, 'vl-1').kind).toBe(kind);
  });

  it('says how far a stopped copy got and that it begins again from a new snapshot', () => {
    const d = decideJoin(record('copying'), 'wa-1');
    expect(d.kind === 'restart' && d.why).toMatch(/after 12,345 rows.*undone.*new snapshot of wa-1/);
  });
});

describe('progressLine', () => {
  const base = { tablesDone: 1, tables: 3, table: 'public.items', transactions: 40, startedAt: 0 };
  it('gives rows/s and an ETA from the estimate', () => {
    expect(progressLine({ ...base, rows: 250_000, estimatedRows: 1_000_000 }, 10_000)).toBe(
      'copy: tables 1/3 (public.items), rows 250,000 of ~1,000,000 (25%), 25,000 rows/s in 40 transactions, ETA 30 s',
    );
  });
  it('never shows more done than the estimate allows, nor an ETA once past it', () => {
    const line = progressLine({ ...base, rows: 1_200_000, estimatedRows: 1_000_000 }, 60_000);
    expect(line).toContain('rows 1,200,000 of ~1,200,000 (100%)');
    expect(line).not.toContain('ETA');
  });
  it('shows minutes and hours for long copies', () => {
    expect(progressLine({ ...base, rows: 10_000, estimatedRows: 1_000_000 }, 10_000)).toMatch(/ETA 17 min$/);
    expect(progressLine({ ...base, rows: 100, estimatedRows: 1_000_000 }, 10_000)).toMatch(/ETA 27\.8 h$/);
  });
});

describe('keepTocEntry', () => {
  it('leaves out the peer’s event triggers and comments on them, keeps the rest', () => {
    expect(keepTocEntry('215; 3466 16420 EVENT TRIGGER - brabant_ddl_end postgres')).toBe(false);
    expect(keepTocEntry('216; 0 0 COMMENT - EVENT TRIGGER brabant_ddl_end postgres')).toBe(false);
    expect(keepTocEntry('210; 1259 16390 TABLE public items postgres')).toBe(true);
    expect(keepTocEntry('212; 2620 16400 TRIGGER public items brabant_tombstone postgres')).toBe(true);
    expect(keepTocEntry(';')).toBe(true);
  });
});
