/**
 * `brabant deadletters [list|show ID|reapply ID|discard ID]`: the dead letters of the topology's
 * nodes (topic brabant.deadletter of each cluster), what was done with each on each target node,
 * and the two ways to close one once its cause is fixed — re-apply it (apply applies it through
 * its normal path, at its original commit time, exactly once: services/apply/replay.ts) or
 * discard it. Both are recorded on the target node (brabant.dead_letter_actions).
 */
import pg from 'pg';
import { BrabantError } from '../runtime/errors.ts';
import { sameCluster, type Topology, type TopologyRegion } from '../runtime/topology.ts';
import { commandKafkaAuth } from './command-access.ts';
import { type DeadLetter, type DeadLetterAction, isOpen, parseDeadLetter } from './deadletter-model.ts';
import { readDeadLetterRecords } from './deadletter-read.ts';
import { readActions } from './status-collect.ts';

/** The topology's clusters, once each (regions sharing one are read once, under the first's name). */
function clusters(t: Topology): TopologyRegion[] {
  const out: TopologyRegion[] = [];
  for (const r of t.regions) if (!out.some((x) => sameCluster(x, r))) out.push(r);
  return out;
}

/** Every dead letter of the topology's nodes, with what was done with it (nodes that do not answer are skipped). */
export async function listDeadLetters(
  t: Topology,
): Promise<{ letters: DeadLetter[]; actions: DeadLetterAction[] }> {
  const ids = t.nodes.map((n) => n.id);
  const [records, actions] = await Promise.all([
    Promise.all(clusters(t).map((r) => readDeadLetterRecords(r, commandKafkaAuth(t, r.name)))).then((x) =>
      x.flat(),
    ),
    Promise.all(t.nodes.map((n) => withNode(n.postgres, (db) => readActions(db, n.id)).catch(() => []))).then(
      (x) => x.flat(),
    ),
  ]);
  const letters = records
    .map((r) => parseDeadLetter(r, ids))
    .filter((d) => ids.includes(d.source) || d.targets.some((x) => ids.includes(x)));
  return { letters, actions };
}

async function withNode<T>(url: string, f: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: url, connectionTimeoutMillis: 4000 });
  db.on('error', () => {});
  await db.connect();
  try {
    return await f(db);
  } finally {
    await db.end().catch(() => {});
  }
}

/** A dead letter's state on each of its targets, as one word each (pure). */
export function stateOf(d: DeadLetter, actions: DeadLetterAction[]): string {
  return d.targets
    .map((t) => {
      const a = actions.find((x) => x.id === d.id && x.node === t);
      return `${t}: ${a === undefined ? 'open' : a.state === 'done' ? (a.action === 'reapply' ? 'reapplied' : 'discarded') : a.state === 'failed' ? 'reapply failed' : 'reapply requested'}`;
    })
    .join(', ');
}

function render(d: DeadLetter, actions: DeadLetterAction[]): string {
  return [
    `${d.id}  ${d.at}  ${d.kind}  ${d.table ?? '-'}  from ${d.source}${d.commitLsn ? ` at ${d.commitLsn}#${d.index}` : ''}  [${stateOf(d, actions)}]`,
    `  reason: ${d.reason}`,
    ...(d.fix ? [`  fix: ${d.fix}`] : []),
    ...(d.notReappliable ? [`  cannot be re-applied: ${d.notReappliable}`] : []),
  ].join('\n');
}

export interface DeadLettersOptions {
  topology: Topology;
  action: string | undefined;
  id: string | undefined;
  node: string | undefined;
  table: string | undefined;
  open: boolean;
  json: boolean;
  timeoutSeconds: number;
}

export async function deadletters(o: DeadLettersOptions): Promise<number> {
  const { letters, actions } = await listDeadLetters(o.topology);
  const action = o.action ?? 'list';
  if (action === 'list') {
    const shown = letters.filter(
      (d) =>
        (o.node === undefined || d.source === o.node || d.targets.includes(o.node)) &&
        (o.table === undefined || d.table === o.table || d.table?.endsWith(`.${o.table}`)) &&
        (!o.open || isOpen(d, actions)),
    );
    if (o.json)
      console.log(
        JSON.stringify({ deadLetters: shown.map((d) => ({ ...d, state: stateOf(d, actions) })) }, null, 2),
      );
    else {
      if (shown.length === 0) console.log('no dead letters');
      for (const d of shown) console.log(`${render(d, actions)}\n`);
      const open = shown.filter((d) => isOpen(d, actions)).length;
      if (shown.length > 0)
        console.log(
          `${open} open of ${shown.length}; \`brabant deadletters reapply ID\` once the cause is fixed, or \`discard ID\``,
        );
    }
    return 0;
  }
  if (o.id === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `brabant deadletters ${action} needs the dead letter's id (from brabant deadletters)`,
    );
  const d = letters.find((x) => x.id === o.id);
  if (d === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `no dead letter ${o.id} of this topology's nodes (brabant deadletters lists them)`,
    );
  if (action === 'show') {
    console.log(JSON.stringify({ ...d, state: stateOf(d, actions) }, null, 2));
    return 0;
  }
  if (action !== 'reapply' && action !== 'discard')
    throw new BrabantError(
      'CONFIG_INVALID',
      `brabant deadletters takes list, show, reapply or discard, not '${action}'`,
    );
  const targets = o.node === undefined ? d.targets : d.targets.filter((t) => t === o.node);
  if (targets.length === 0)
    throw new BrabantError(
      'CONFIG_INVALID',
      `dead letter ${d.id} is for ${d.targets.join(', ')}, not ${o.node}`,
    );
  if (action === 'reapply' && d.replay === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `dead letter ${d.id} cannot be re-applied: ${d.notReappliable}; discard it once handled`,
    );
  let failed = 0;
  for (const target of targets) {
    const n = o.topology.nodes.find((x) => x.id === target);
    if (n === undefined) continue;
    const result = await withNode(n.postgres, (db) =>
      action === 'discard' ? discardOn(db, d) : reapplyOn(db, d, o.timeoutSeconds),
    );
    console.log(`${target}: ${result.line}`);
    if (!result.ok) failed++;
  }
  return failed > 0 ? 1 : 0;
}

async function discardOn(db: pg.Client, d: DeadLetter): Promise<{ ok: boolean; line: string }> {
  const r = await db.query(
    `insert into brabant.dead_letter_actions (id, action, source, state, detail, done_at)
     values ($1, 'discard', $2, 'done', 'discarded by the operator', now())
     on conflict (id) do update set action = 'discard', state = 'done', detail = 'discarded by the operator', done_at = now()
       where brabant.dead_letter_actions.state <> 'done'`,
    [d.id, d.source],
  );
  return (r.rowCount ?? 0) > 0
    ? { ok: true, line: 'discarded' }
    : { ok: true, line: 'already closed (re-applied or discarded before)' };
}

async function reapplyOn(
  db: pg.Client,
  d: DeadLetter,
  timeoutSeconds: number,
): Promise<{ ok: boolean; line: string }> {
  const asked = await db.query(
    `insert into brabant.dead_letter_actions (id, action, source, format, payload, state)
     values ($1, 'reapply', $2, $3, $4, 'requested')
     on conflict (id) do update set action = 'reapply', state = 'requested', format = excluded.format,
       payload = excluded.payload, detail = null, requested_at = now(), done_at = null
       where brabant.dead_letter_actions.state = 'failed'`,
    [d.id, d.source, d.replay!.format, JSON.stringify(d.replay!.payload)],
  );
  if ((asked.rowCount ?? 0) === 0) {
    const was = (
      await db.query('select action, state, detail from brabant.dead_letter_actions where id = $1', [d.id])
    ).rows[0];
    if (was?.state === 'done')
      return {
        ok: true,
        line: `already ${was.action === 'discard' ? 'discarded' : 're-applied'} (${was.detail})`,
      };
  }
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const r = (
      await db.query<{ state: string; detail: string | null }>(
        'select state, detail from brabant.dead_letter_actions where id = $1',
        [d.id],
      )
    ).rows[0];
    if (r?.state === 'done') return { ok: true, line: r.detail ?? 're-applied' };
    if (r?.state === 'failed')
      return {
        ok: false,
        line: `not re-applied: ${r.detail}; it stays open (fix the cause and run reapply again)`,
      };
    if (Date.now() > deadline)
      return {
        ok: false,
        line: `requested; apply has not taken it within ${timeoutSeconds} s (is apply of this node running? brabant status)`,
      };
    await new Promise((res) => setTimeout(res, 250));
  }
}
