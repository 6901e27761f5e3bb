/**
 * `brabant ddl apply|check|resolve`: schema changes rolled out through the registry's gate, and
 * the operator's answer to a DDL that failed on a node. Nodes are found in the local stack's state
 * (BRABANT_HOME) by id, in the database given.
 */
import { readFileSync } from 'node:fs';
import { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { changeTopic } from '../protocol/topics.ts';
import type { ConfigOf } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import { behind } from './catch-up.ts';
import type { controlConfig } from './config.ts';
import {
  appliedOn,
  compatibilityProblems,
  dryRun,
  incompatible,
  proposals,
  runChange,
  splitStatements,
} from './ddl-rollout.ts';
import { connected, pickNode, say, stackNodes } from './nodes.ts';

type Compatibility = 'BACKWARD' | 'FORWARD' | 'FULL' | 'NONE' | 'BACKWARD_TRANSITIVE' | 'FULL_TRANSITIVE';
const COMPATIBILITY: Compatibility[] = [
  'BACKWARD',
  'FORWARD',
  'FULL',
  'NONE',
  'BACKWARD_TRANSITIVE',
  'FULL_TRANSITIVE',
];

export interface DdlOptions {
  config: ConfigOf<typeof controlConfig>;
  action: string | undefined;
  node: string | undefined;
  database: string;
  sql: string | undefined;
  file: string | undefined;
  topic: string | undefined;
  /** A registry other than the stack's. */
  registry: string | undefined;
  compatibility: string | undefined;
  timeoutSeconds: number;
  skip: boolean;
  retry: boolean;
}

export async function ddl(o: DdlOptions): Promise<number> {
  switch (o.action) {
    case 'apply':
    case 'check':
      return rollout(o, o.action);
    case 'resolve':
      return resolve(o);
    default:
      throw new BrabantError(
        'CONFIG_INVALID',
        `brabant ddl needs apply, check or resolve, not '${o.action ?? ''}'`,
      );
  }
}

async function rollout(o: DdlOptions, action: 'apply' | 'check'): Promise<number> {
  const sql = o.file !== undefined ? readFileSync(o.file, 'utf8') : o.sql;
  if (sql === undefined || sql.trim() === '')
    throw new BrabantError(
      'CONFIG_INVALID',
      'give the change: brabant ddl apply --node N "SQL" (or --file F)',
    );
  const compatibility = o.compatibility?.toUpperCase() as Compatibility | undefined;
  if (compatibility !== undefined && !COMPATIBILITY.includes(compatibility))
    throw new BrabantError('CONFIG_INVALID', `--compatibility must be one of ${COMPATIBILITY.join(', ')}`);
  const { nodes, registryUrl, registryTls } = stackNodes(o.config.home, o.database);
  const node = pickNode(nodes, o.node);
  const registry = new SchemaRegistryClient({
    url: o.registry ?? registryUrl,
    retries: 2,
    ...(o.registry === undefined && registryTls !== undefined ? { tls: registryTls } : {}),
  });
  const topic = o.topic ?? changeTopic(node.region);
  return connected(node.url, async (db) => {
    const statements = await splitStatements(db, sql);
    const { tables, types } = await dryRun(db, statements);
    const proposed = proposals(tables, types, topic);
    if (compatibility !== undefined)
      for (const p of proposed) await registry.setCompatibility(p.subject, compatibility);
    const problems = await compatibilityProblems(registry, proposed);
    if (problems.length > 0) throw incompatible(problems);
    say(
      `checked with the registry: ${proposed.map((p) => `${p.table.schema}.${p.table.name}`).join(', ') || 'no table shape changes'} compatible`,
    );
    if (action === 'check') return 0;
    await runChange(db, statements);
    say(`applied on ${node.id}; waiting until every other node has applied it`);
    const peers = nodes.filter((n) => n.id !== node.id);
    const deadline = Date.now() + o.timeoutSeconds * 1000;
    for (;;) {
      const { applied, waiting } = await appliedOn(peers, tables);
      if (waiting.length === 0) {
        say(`applied on every node (${[node.id, ...applied].join(', ')})`);
        return 0;
      }
      if (Date.now() > deadline) {
        console.error(
          `brabant ddl: not every node has applied the change after ${o.timeoutSeconds} s: ${waiting.map((w) => `${w.id} ${w.why}`).join('; ')}; it applies there in stream order once the node and its apply run`,
        );
        return 1;
      }
      // how far each is behind the node the change ran on: the catch-up it waits for
      const far = await Promise.all(
        waiting.map((w) =>
          behind(node, peers.find((p) => p.id === w.id)!).then((b) =>
            b ? `, ${b.replace(`${w.id} is `, '')}` : '',
          ),
        ),
      );
      say(
        `waiting for ${waiting.map((w, i) => `${w.id} (${w.why}${far[i]})`).join(', ')}${applied.length > 0 ? `; applied on ${applied.join(', ')}` : ''}`,
      );
      await new Promise((r) => setTimeout(r, 1000));
    }
  });
}

/** Answers the DDLs that failed on a node and pause their streams: skip them (fixed by hand) or retry. */
async function resolve(o: DdlOptions): Promise<number> {
  if (o.skip === o.retry)
    throw new BrabantError('CONFIG_INVALID', 'say --skip (you changed the schema yourself) or --retry');
  const { nodes } = stackNodes(o.config.home, o.database);
  const node = pickNode(nodes, o.node);
  return connected(node.url, async (db) => {
    const res = await db.query<{
      source: string;
      lsn: string;
      statement: string | null;
      reason: string | null;
    }>(
      `insert into brabant.ddl_resolutions (source, commit_lsn, action)
         select distinct c.remote_node, c.remote_commit_lsn, $1 from brabant.conflicts c
          where c.kind = 'ddl_failed'
            and not exists (select 1 from brabant.ddl_resolutions r where r.source = c.remote_node and r.commit_lsn = c.remote_commit_lsn)
       on conflict (source, commit_lsn) do update set action = excluded.action, requested_at = now()
       returning source, commit_lsn::text as lsn,
         (select remote_row ->> 'statement' from brabant.conflicts x where x.kind = 'ddl_failed' and x.remote_node = source and x.remote_commit_lsn = commit_lsn limit 1) as statement,
         (select remote_row ->> 'reason' from brabant.conflicts x where x.kind = 'ddl_failed' and x.remote_node = source and x.remote_commit_lsn = commit_lsn limit 1) as reason`,
      [o.skip ? 'skip' : 'retry'],
    );
    if (res.rows.length === 0) {
      say(`no failed DDL waits on ${node.id}`);
      return 0;
    }
    for (const r of res.rows)
      say(
        `${o.skip ? 'skipping' : 'retrying'} on ${node.id}: ${r.source}'s DDL at ${r.lsn} (${r.statement}; it failed with: ${r.reason})`,
      );
    return 0;
  });
}
