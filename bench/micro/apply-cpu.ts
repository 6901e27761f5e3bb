/**
 * Apply's JavaScript per row, without Kafka or PostgreSQL: W1's rows (the items table, 100-row
 * transactions) encoded as capture writes them, then decoded and planned by the fast path as
 * apply does, timed in-process. For quick A/B of apply's hot path on a noisy machine (the
 * end-to-end figure is W1's): `npx tsx bench/micro/apply-cpu.ts [rows] [rounds]`.
 */
import { performance } from 'node:perf_hooks';
import { PreparedStatements } from '../../services/apply/executor/prepared-statements.ts';
import { planFast } from '../../services/apply/planner/fast.ts';
import { DEFAULT_POLICY, type TargetColumn, type TargetTable } from '../../services/apply/target-catalog.ts';
import { ChangeDecoder, type DecodedChange } from '../../services/protocol/change-decoder.ts';
import { frame } from '../../services/protocol/envelope.ts';
import { ZERO_LSN } from '../../services/protocol/lsn.ts';
import { itemsSchema, itemValues, TX_ROWS } from './w1-items.ts';

const rows = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 5);

const ts = itemsSchema();
const records: Buffer[] = [];
for (let i = 0; i < rows; i++) {
  const tx = Math.floor(i / TX_ROWS);
  const values = itemValues(i);
  const body = ts.type.toBuffer({
    envelope: 1,
    origin: { region: 'vlaanderen', node: 'vl-1' },
    tx: {
      xid: BigInt(1000 + tx),
      commitLsn: BigInt((tx + 1) * 4096),
      commitTs: 1796190000000000n + BigInt(tx),
      index: i % TX_ROWS,
      last: i % TX_ROWS === TX_ROWS - 1,
    },
    op: 'INSERT',
    schema: 'public',
    table: 'items',
    key: { [`${ts.fullName}.Key`]: ts.key(values) },
    before: null,
    after: { [`${ts.fullName}.Row`]: ts.row(values) },
  });
  records.push(frame(1, body));
}

const col = (name: string, type: string, notNull = false): [string, TargetColumn] => [
  name,
  { name, type, notNull, identity: '', baseType: type, addedValue: null },
];
const table: TargetTable = {
  schema: 'public',
  name: 'items',
  sql: '"public"."items"',
  columns: new Map([
    col('id', 'bigint', true),
    col('region', 'text'),
    col('qty', 'integer'),
    col('payload', 'text'),
    col('updated_at', 'timestamp with time zone'),
  ]),
  primaryKey: ['id'],
  otherUniqueKeys: false,
  primaryKeyIndex: 'items_pkey',
  identityAlways: false,
  renames: new Map(),
  policy: DEFAULT_POLICY,
  replicaIdentity: 'd',
};

const decoder = new ChangeDecoder({ schemaById: async () => JSON.stringify(ts.schema) });
const statements = new PreparedStatements({ query: async () => undefined });

async function round(): Promise<{ decode: number; plan: number; chars: number }> {
  let t = performance.now();
  const changes: DecodedChange[] = [];
  for (const r of records) changes.push(await decoder.decode(r));
  const decode = performance.now() - t;
  t = performance.now();
  let chars = 0;
  for (let i = 0; i < changes.length; ) {
    const plan = planFast(changes, i, {
      applied: ZERO_LSN,
      limit: 500,
      chunkRows: 2000,
      statements,
      roident: 1,
      table: () => table,
    });
    for (const tx of plan.txs) chars += tx.script.length;
    i = plan.next;
  }
  return { decode, plan: performance.now() - t, chars };
}

const us = (ms: number) => ((ms * 1000) / rows).toFixed(2);
for (let r = 1; r <= rounds; r++) {
  const x = await round();
  console.log(
    `round ${r}: decode ${us(x.decode)} µs/row, plan ${us(x.plan)} µs/row, script ${(x.chars / rows).toFixed(0)} chars/row`,
  );
}
