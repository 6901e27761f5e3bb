/**
 * A dead letter as an operator sees it (pure): what a record of the topic `brabant.deadletter`
 * is, read from its headers and value — written by capture (services/capture/rejects.ts: the raw
 * change, the code, the reason and the fix) or by apply (services/apply/side-topics.ts: a row it
 * could not apply, a DDL that failed, or a record it could not decode) — and what can be done
 * with it: a row can be re-applied once its cause is fixed, anything can be discarded.
 */

export type DeadLetterKind = 'capture' | 'row' | 'ddl' | 'undecodable';

export interface DeadLetter {
  /** `<region of the cluster>:<partition>@<offset>`: unique, stable, what the commands take. */
  id: string;
  kind: DeadLetterKind;
  /** When it was written (the record's timestamp, ISO). */
  at: string;
  /** Node whose change it is. */
  source: string;
  /** Nodes it was meant for: apply's own node, or every other node for a change capture could not send. */
  targets: string[];
  table: string | null;
  reason: string;
  fix: string | null;
  /** Source commit LSN and index in its transaction. */
  commitLsn: string | null;
  index: number | null;
  /** What a re-apply hands to apply, or undefined when it cannot be re-applied (why in `notReappliable`). */
  replay?: { format: 'apply' | 'capture' | 'framed'; payload: unknown };
  notReappliable?: string;
  /** The record's value as JSON (or the raw bytes in base64 for an undecodable one). */
  body: unknown;
}

export interface RawRecord {
  region: string;
  partition: number;
  offset: string;
  timestamp: string;
  key: string | null;
  headers: Record<string, string>;
  value: Buffer | null;
}

/** A record of the dead-letter topic, read (pure); `nodes` are the topology's node ids. */
export function parseDeadLetter(r: RawRecord, nodes: string[]): DeadLetter {
  const h = r.headers;
  const id = `${r.region}:${r.partition}@${r.offset}`;
  const at = new Date(Number(r.timestamp)).toISOString();
  const text = r.value?.toString('utf8') ?? '';
  let json: Record<string, unknown> | undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  const source = r.key ?? (json?.node as string | undefined) ?? '?';
  // the topology's other nodes, for a dead letter of one of its nodes; none for another
  // deployment's node that shares the cluster (its dead letters are not this topology's)
  const others = nodes.includes(source) ? nodes.filter((n) => n !== source) : [];
  const lsnHeader = h['brabant.commit-lsn'] ?? null;
  const commitLsn = lsnHeader !== null && /^\d+$/.test(lsnHeader) ? decimalLsn(lsnHeader) : lsnHeader;
  const index = h['brabant.index'] === undefined ? null : Number(h['brabant.index']);
  if (h['brabant.stage'] === 'capture' && json !== undefined) {
    const base64 = JSON.stringify(json.change ?? {}).includes('"base64"');
    return {
      id,
      kind: 'capture',
      at,
      source,
      targets: others,
      table: (json.table as string | undefined) ?? h['brabant.table'] ?? null,
      reason: h['brabant.reason'] ?? String(json.reason ?? ''),
      fix: (json.fix as string | undefined) ?? null,
      commitLsn,
      index,
      ...(base64 || (json.change as { op?: string } | undefined)?.op === 'MESSAGE'
        ? {
            notReappliable: base64
              ? 'it holds bytes that are not text (base64): they cannot be applied as text'
              : 'it is an undecodable stream message, not a row',
          }
        : { replay: { format: 'capture' as const, payload: json } }),
      body: json,
    };
  }
  const target = h['brabant.target-node'];
  const targets = target === undefined ? others : [target];
  if (json?.kind === 'ddl')
    return {
      id,
      kind: 'ddl',
      at,
      source,
      targets,
      table: null,
      reason: h['brabant.reason'] ?? '',
      fix: 'the DDL pauses its stream on that node: fix what is in the way and run `brabant ddl resolve --retry` (or --skip)',
      commitLsn,
      index,
      notReappliable: 'a failed DDL is resolved with `brabant ddl resolve`, not re-applied',
      body: json,
    };
  if (json?.kind === 'row')
    return {
      id,
      kind: 'row',
      at,
      source,
      targets,
      table: `${json.schema}.${json.table}`,
      reason: h['brabant.reason'] ?? '',
      fix: 'fix what the reason names on the target (a missing table or column, a constraint, a type), then re-apply',
      commitLsn,
      index,
      replay: { format: 'apply', payload: json },
      body: json,
    };
  return {
    id,
    kind: 'undecodable',
    at,
    source,
    targets,
    table: null,
    reason: h['brabant.reason'] ?? '',
    fix: 'fix the registry or the writer, then re-apply (apply decodes it again)',
    commitLsn,
    index,
    replay: { format: 'framed', payload: r.value?.toString('base64') ?? '' },
    body: {
      base64: r.value?.toString('base64') ?? null,
      sourceTopic: h['brabant.source-topic'],
      sourcePartition: h['brabant.source-partition'],
      sourceOffset: h['brabant.source-offset'],
    },
  };
}

/** Apply writes the commit LSN header as a decimal number; people read `X/Y`. */
function decimalLsn(d: string): string {
  const n = BigInt(d);
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** What was done with a dead letter on one target node (table brabant.dead_letter_actions). */
export interface DeadLetterAction {
  node: string;
  id: string;
  action: 'reapply' | 'discard';
  state: 'requested' | 'done' | 'failed';
  detail: string | null;
  at: string;
}

/** Open: some target has done nothing with it yet, or its re-apply failed. */
export function isOpen(d: DeadLetter, actions: DeadLetterAction[]): boolean {
  return d.targets.some((t) => {
    const a = actions.find((x) => x.id === d.id && x.node === t);
    return a === undefined || a.state !== 'done';
  });
}
