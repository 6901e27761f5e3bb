/**
 * The initial copy of a joining node as scripts (pure): rows read from a peer's snapshot, each with
 * the version of the transaction that wrote it there (commit time, origin node), become local
 * transactions that give every row the same version here. PostgreSQL keeps a row's version per
 * transaction (the xmin's commit time and origin), so rows can only share a local transaction
 * when they share a version: the rows of a batch are grouped by (node, commit time), and each group
 * is one local transaction under the replication-origin session of that node with
 * `pg_replication_origin_xact_setup(0/0, commit time)` — LSN 0/0 leaves the origin's progress
 * alone (it only ever moves forward; the join sets it afterwards). A row whose version is unknown
 * on the peer (frozen, or older than its commit-time data) counts as oldest there; it gets the
 * oldest version here too: the peer's node at the Unix epoch.
 *
 * The cost: one local transaction per distinct source transaction among the rows copied — cheap
 * for rows loaded in bulk, one commit per row for rows that were each written alone.
 */
import { codecFromAvro } from '../../protocol/pg-types.ts';
import { literal, textArrayLiteral } from './script.ts';

const timestamptz = codecFromAvro({ type: 'long', logicalType: 'timestamp-micros' });

/** A row to copy with its version (capture/snapshot.ts reads them). */
export interface CopyRow {
  /** Commit time in unix microseconds, or null when the peer does not know it. */
  ts: bigint | null;
  node: string;
  /** The row's text form (a composite literal of the table's row type). */
  row: string;
}

/** The version given to rows whose version the peer does not know: the oldest there is. */
export const UNKNOWN_VERSION_TS = 0n;

/** The statements a copy connection prepares once (names are per connection). */
export const COPY_SETUP = {
  name: 'brabant_copy_setup',
  sql: "prepare brabant_copy_setup(timestamptz) as select pg_replication_origin_xact_setup('0/0', $1)",
};

/** How rows of a table go in: a prepared statement taking the rows' text forms as text[]. */
export function copyInsert(name: string, table: string, columns: string[], identityAlways: boolean): string {
  const cols = columns.join(', ');
  const pick = columns.map((c) => `(x).${c}`).join(', ');
  return (
    `prepare ${name}(text[]) as insert into ${table} (${cols})${identityAlways ? ' overriding system value' : ''} ` +
    `select ${pick} from (select v::${table} as x from unnest($1) v) s`
  );
}

/** One round trip of one origin's connection: whole local transactions, and the rows they hold. */
export interface CopyScript {
  node: string;
  sql: string;
  rows: number;
  transactions: number;
}

/**
 * The scripts that copy `rows` into the table whose insert statement is `insert`: per origin
 * node, one transaction per commit time, cut into round trips of at most `maxTransactions`
 * transactions or `maxBytes` of text.
 */
export function planCopy(
  rows: CopyRow[],
  insert: string,
  limits: { maxTransactions: number; maxBytes: number },
): CopyScript[] {
  const groups = new Map<string, Map<bigint, string[]>>();
  for (const r of rows) {
    let byTs = groups.get(r.node);
    if (byTs === undefined) {
      byTs = new Map();
      groups.set(r.node, byTs);
    }
    const ts = r.ts ?? UNKNOWN_VERSION_TS;
    const list = byTs.get(ts);
    if (list === undefined) byTs.set(ts, [r.row]);
    else list.push(r.row);
  }
  const out: CopyScript[] = [];
  for (const [node, byTs] of groups) {
    let parts: string[] = [];
    let bytes = 0;
    let count = 0;
    let txs = 0;
    const flush = () => {
      if (parts.length === 0) return;
      out.push({ node, sql: parts.join('\n'), rows: count, transactions: txs });
      parts = [];
      bytes = 0;
      count = 0;
      txs = 0;
    };
    for (const [ts, texts] of byTs) {
      const tx =
        `begin; execute ${COPY_SETUP.name}(${literal(timestamptz.toText(ts))}); ` +
        `execute ${insert}(${textArrayLiteral(texts)}); commit;`;
      if (txs >= limits.maxTransactions || (bytes > 0 && bytes + tx.length > limits.maxBytes)) flush();
      parts.push(tx);
      bytes += tx.length;
      count += texts.length;
      txs++;
    }
    flush();
  }
  return out;
}
