/**
 * What `brabant status` reports (pure): the shape of the report (`--json` prints it as is, one
 * object per node under `regions[].nodes[]`), the verdict computed from it, and its text form.
 * The collector (status-collect.ts) fills a report from the topology; nothing here does I/O, and
 * the verdict takes its thresholds as arguments, so each rule is tested by a table of reports.
 *
 * Verdict: `down` when some node's changes cannot reach its peers or applications cannot write
 * (a node, a Kafka cluster, a capture or an apply not running, a router without leader);
 * `degraded` when everything runs but something needs a person (lag over the threshold, a
 * paused stream or table, a DDL waiting, open dead letters, retained WAL over the warning, the
 * registry or a router unreachable); `healthy` otherwise. Exit codes: 0, 1, 2 (3: status itself
 * could not run, e.g. no topology).
 */

export type State = 'healthy' | 'degraded' | 'down';

export interface Reach {
  /** Whether it answered. */
  reachable: boolean;
  /** Why not, when it did not. */
  error?: string;
}

export interface ServiceHealth extends Reach {
  /** Where its /metrics and /healthz are. */
  url: string;
  /** /healthz said ready (capture: the slot streams; apply: every cluster read). */
  ready?: boolean;
  readyDetail?: string;
}

export interface CaptureStatus extends ServiceHealth {
  slot?: {
    name: string;
    exists: boolean;
    active: boolean;
    confirmedLsn: string | null;
    retainedWalBytes: number | null;
    walStatus: string | null;
  };
  /** Seconds since capture last committed a Kafka transaction (heartbeats included). */
  lastProduceAgoSeconds?: number | null;
  deadLetters?: number;
  pausedTables: string[];
}

export interface OriginStatus {
  /** The source node whose changes this apply applies. */
  source: string;
  /** The origin's progress on this node (source commit LSN). */
  appliedLsn: string | null;
  /** Source's current WAL position minus the applied LSN, in bytes. */
  lagBytes: number | null;
  /** Now minus the commit time of the newest transaction or heartbeat applied (from apply). */
  lagSeconds: number | null;
  /** When that was committed on the source (ISO), from the lag. */
  lastAppliedCommitTime: string | null;
}

export interface PausedStream {
  topic: string;
  partition: string;
  reason: string;
}

export interface ApplyStatus extends ServiceHealth {
  origins: OriginStatus[];
  pausedStreams: PausedStream[];
  clusters: { cluster: string; up: boolean }[];
  deadLetters?: number;
  /** Counters since apply started (rates are their differences): rows applied, conflicts resolved by kind. */
  rowsApplied?: number;
  conflictsResolved?: Record<string, number>;
}

export interface PendingDdl {
  source: string;
  commitLsn: string;
  statement: string | null;
  reason: string | null;
}

export interface NodeStatus {
  id: string;
  region: string;
  database: Reach & { walLsn?: string };
  capture: CaptureStatus;
  apply: ApplyStatus;
  /** Conflicts resolved on this node by kind: in the last hour, and in all. */
  conflicts: { kind: string; lastHour: number; total: number }[];
  pendingDdl: PendingDdl[];
}

export interface RouterStatus extends Reach {
  url: string;
  leader: string | null;
  nodes: { id: string; healthy: boolean }[];
}

export interface RegionStatus {
  name: string;
  kafka: Reach & { brokers: string[] };
  registry: Reach & { url: string };
  router?: RouterStatus;
  /** Dead letters in this region's cluster (topic brabant.deadletter), and those still open (not re-applied or discarded). */
  deadLetters?: { total: number; open: number };
  nodes: NodeStatus[];
}

export interface StatusReport {
  at: string;
  topology: string;
  verdict: { state: State; reasons: string[] };
  regions: RegionStatus[];
}

export interface Thresholds {
  /** Lag over this many seconds is degraded. */
  maxLagSeconds: number;
  /** Retained WAL over this many bytes is degraded. */
  maxRetainedWalBytes: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = { maxLagSeconds: 30, maxRetainedWalBytes: 1024 ** 3 };

const why = (r: Reach) => (r.error ? ` (${r.error})` : '');

/** The verdict of a report (pure): the state and every reason, the worst first. */
export function verdictOf(report: Omit<StatusReport, 'verdict'>, t: Thresholds): StatusReport['verdict'] {
  const down: string[] = [];
  const degraded: string[] = [];
  for (const r of report.regions) {
    if (!r.kafka.reachable) down.push(`Kafka of ${r.name} unreachable${why(r.kafka)}`);
    if (!r.registry.reachable) degraded.push(`registry of ${r.name} unreachable${why(r.registry)}`);
    if (r.router !== undefined) {
      if (!r.router.reachable) degraded.push(`router of ${r.name} unreachable${why(r.router)}`);
      else if (r.router.leader === null)
        down.push(`router of ${r.name} has no leader: its applications cannot write`);
    }
    if (r.deadLetters !== undefined && r.deadLetters.open > 0)
      degraded.push(`${r.deadLetters.open} open dead letter(s) in ${r.name}'s cluster (brabant deadletters)`);
    for (const n of r.nodes) {
      if (!n.database.reachable) {
        down.push(`node ${n.id} unreachable${why(n.database)}`);
        continue;
      }
      if (!n.capture.reachable) down.push(`capture of ${n.id} not running${why(n.capture)}`);
      else if (n.capture.ready === false)
        down.push(`capture of ${n.id} not streaming: ${n.capture.readyDetail ?? 'not ready'}`);
      if (!n.apply.reachable) down.push(`apply of ${n.id} not running${why(n.apply)}`);
      else if (n.apply.ready === false)
        down.push(`apply of ${n.id} not streaming: ${n.apply.readyDetail ?? 'not ready'}`);
      for (const c of n.apply.clusters)
        if (!c.up) down.push(`apply of ${n.id} cannot read Kafka ${c.cluster}`);
      for (const p of n.apply.pausedStreams)
        degraded.push(`apply of ${n.id}: stream ${p.topic}/${p.partition} paused (${p.reason})`);
      for (const table of n.capture.pausedTables)
        degraded.push(`capture of ${n.id}: table ${table} paused (its changes go to the dead-letter topic)`);
      for (const d of n.pendingDdl)
        degraded.push(
          `DDL of ${d.source} at ${d.commitLsn} waits on ${n.id}${d.reason ? `: ${d.reason}` : ''} (brabant ddl resolve)`,
        );
      for (const o of n.apply.origins)
        if (o.lagSeconds !== null && o.lagSeconds > t.maxLagSeconds)
          degraded.push(
            `${n.id} is ${o.lagSeconds.toFixed(1)} s behind ${o.source} (over ${t.maxLagSeconds} s)`,
          );
      const wal = n.capture.slot?.retainedWalBytes;
      if (wal !== null && wal !== undefined && wal > t.maxRetainedWalBytes)
        degraded.push(
          `slot of ${n.id} retains ${formatBytes(wal)} of WAL (over ${formatBytes(t.maxRetainedWalBytes)})`,
        );
    }
  }
  if (down.length > 0) return { state: 'down', reasons: [...down, ...degraded] };
  if (degraded.length > 0) return { state: 'degraded', reasons: degraded };
  return { state: 'healthy', reasons: [] };
}

export function exitCodeOf(state: State): number {
  switch (state) {
    case 'healthy':
      return 0;
    case 'degraded':
      return 1;
    case 'down':
      return 2;
    default:
      return state satisfies never;
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

const secs = (s: number | null | undefined) => (s === null || s === undefined ? '-' : `${s.toFixed(1)} s`);

/** The report as a person reads it in a terminal: the verdict line first. */
export function renderStatus(r: StatusReport): string {
  const out: string[] = [];
  out.push(r.verdict.state === 'healthy' ? 'healthy' : `${r.verdict.state}: ${r.verdict.reasons[0]}`);
  for (const reason of r.verdict.reasons.slice(1)) out.push(`  also: ${reason}`);
  out.push(`(${r.topology}, ${r.at})`);
  for (const g of r.regions) {
    out.push('', `region ${g.name}`);
    out.push(
      `  kafka ${g.kafka.brokers.join(',')}: ${g.kafka.reachable ? 'reachable' : `UNREACHABLE${why(g.kafka)}`}`,
    );
    out.push(
      `  registry ${g.registry.url}: ${g.registry.reachable ? 'reachable' : `UNREACHABLE${why(g.registry)}`}`,
    );
    if (g.router !== undefined)
      out.push(
        `  router ${g.router.url}: ${g.router.reachable ? `leader ${g.router.leader ?? 'NONE'}; nodes ${g.router.nodes.map((n) => `${n.id} ${n.healthy ? 'healthy' : 'UNHEALTHY'}`).join(', ')}` : `UNREACHABLE${why(g.router)}`}`,
      );
    if (g.deadLetters !== undefined)
      out.push(`  dead letters: ${g.deadLetters.open} open of ${g.deadLetters.total}`);
    for (const n of g.nodes) {
      out.push(
        `  node ${n.id}: ${n.database.reachable ? `reachable, WAL at ${n.database.walLsn}` : `UNREACHABLE${why(n.database)}`}`,
      );
      if (!n.database.reachable) continue;
      const c = n.capture;
      const slot = c.slot;
      out.push(
        `    capture: ${c.reachable ? (c.ready ? 'streaming' : `NOT STREAMING (${c.readyDetail})`) : `NOT RUNNING${why(c)}`}` +
          (slot
            ? `; slot ${slot.name} ${slot.exists ? `${slot.active ? 'active' : 'inactive'}, confirmed ${slot.confirmedLsn}, retains ${slot.retainedWalBytes === null ? '-' : formatBytes(slot.retainedWalBytes)}` : 'MISSING'}`
            : '') +
          (c.lastProduceAgoSeconds !== undefined
            ? `; last produce ${secs(c.lastProduceAgoSeconds)} ago`
            : '') +
          (c.deadLetters ? `; ${c.deadLetters} dead-lettered` : ''),
      );
      for (const t of c.pausedTables) out.push(`      table ${t} PAUSED`);
      const a = n.apply;
      out.push(
        `    apply: ${a.reachable ? (a.ready ? 'streaming' : `NOT STREAMING (${a.readyDetail})`) : `NOT RUNNING${why(a)}`}` +
          (a.deadLetters ? `; ${a.deadLetters} dead-lettered` : ''),
      );
      for (const o of a.origins)
        out.push(
          `      from ${o.source}: lag ${secs(o.lagSeconds)}, ${o.lagBytes === null ? '-' : formatBytes(o.lagBytes)} behind; applied ${o.appliedLsn ?? 'nothing yet'}${o.lastAppliedCommitTime ? ` (committed ${o.lastAppliedCommitTime})` : ''}`,
        );
      for (const p of a.pausedStreams) out.push(`      stream ${p.topic}/${p.partition} PAUSED: ${p.reason}`);
      for (const cl of a.clusters) if (!cl.up) out.push(`      cluster ${cl.cluster} UNREACHABLE`);
      const conflicts = n.conflicts.map((k) => `${k.kind} ${k.lastHour}/${k.total}`).join(', ');
      out.push(`    conflicts (last hour/total): ${conflicts || 'none'}`);
      for (const d of n.pendingDdl)
        out.push(
          `    DDL of ${d.source} at ${d.commitLsn} WAITING: ${d.statement ?? ''} — ${d.reason ?? ''}`,
        );
    }
  }
  return out.join('\n');
}
