/**
 * The local transaction the full path holds open for one source transaction: what it has sent
 * and not, what it found (conflicts, dead letters), and the catalog it sees after a DDL.
 */
import type { DecodedChange, RowChange } from '../protocol/change-decoder.ts';
import type { Lsn } from '../protocol/lsn.ts';
import type { ConflictRecord, DeadLetter } from './outcome/conflict-log.ts';
import { quoteIdent, type TargetCatalog } from './target-catalog.ts';

export interface OpenTx {
  commitLsn: Lsn;
  commitTs: bigint;
  lastIndex: number;
  begun: boolean;
  /** Statements of this local transaction not sent yet: they go with the next one that answers. */
  deferred: string[];
  pending: RowChange[];
  conflicts: ConflictRecord[];
  deadLetters: DeadLetter[];
  rows: number;
  actions: Map<string, number>;
  /**
   * After a DDL in this transaction: the catalog as this session sees it (the tables the DDL
   * made or changed are not committed, so not visible to the shared catalog's connection).
   */
  catalog: TargetCatalog | undefined;
}

/** The tables a source transaction's events write, quoted (what a collision retry locks). */
export function tablesOf(changes: DecodedChange[], start: number, end: number): string[] {
  const tables = new Set<string>();
  for (let j = start; j < end; j++) {
    const c = changes[j]!;
    if (c.kind === 'row') tables.add(`${quoteIdent(c.schema)}.${quoteIdent(c.table)}`);
  }
  return [...tables];
}

export function newOpenTx(commitLsn: Lsn, commitTs: bigint): OpenTx {
  return {
    commitLsn,
    commitTs,
    lastIndex: -1,
    begun: false,
    deferred: [],
    pending: [],
    conflicts: [],
    deadLetters: [],
    rows: 0,
    actions: new Map(),
    catalog: undefined,
  };
}
