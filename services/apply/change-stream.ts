/**
 * The change topics as apply reads them (I/O shell around the appliers): each Kafka batch is
 * decoded, cut into runs of consecutive events of one source (handed to that source's applier
 * at once: the group strategies apply many small transactions per round trip), the outcomes'
 * conflicts and dead letters published, and the offsets the group may commit tracked
 * (offset-tracker.ts).
 *
 * A record that cannot be decoded at all (bad framing, a body that does not match its schema)
 * goes to the dead-letter topic. A record whose schema the registry cannot give (unknown id,
 * registry down) is not poison: the registry is wrong or away, not the record. Its partition is
 * paused at that record and tried again with backoff, so nothing after it is applied out of
 * order and nothing is skipped.
 *
 * Whose events are applied (own-stream.ts): every other node's, except those of a node that left
 * the cluster (up to where it left: they were applied before); this node's own only up to the
 * horizon of changes its database lost (restored from a backup, or rebuilt by a join), like a
 * peer's. Where each partition starts is checked against what this database says it read
 * (`startAt`): a database restored from a backup resumes from there, not from the group's newer
 * offsets.
 */
import type { Consumer, EachBatchPayload } from 'kafkajs';
import type { ChangeDecoder, DecodedChange } from '../protocol/change-decoder.ts';
import { ChunkReassembler, HEADER_CHUNK } from '../protocol/chunks.ts';
import { decodePosition } from '../protocol/headers.ts';
import type { Lsn } from '../protocol/lsn.ts';
import { isBrabantError } from '../runtime/errors.ts';
import { failpoint } from '../runtime/failpoints.ts';
import type { Logger } from '../runtime/log.ts';
import { backoffDelay } from '../runtime/supervise.ts';
import type { ApplyMetrics } from './metrics.ts';
import type { OffsetCommit, OffsetTracker } from './offset-tracker.ts';
import type { OriginApplier } from './origin-applier.ts';
import type { SideTopics } from './side-topics.ts';

/** How often a run being applied heartbeats the group (kafkajs sends one at most per heartbeatInterval). */
const HEARTBEAT_DURING_RUN_MS = 1_000;

export interface ChangeStreamDeps {
  nodeId: string;
  consumer: Consumer;
  decoder: ChangeDecoder;
  applierFor: (source: string) => Promise<OriginApplier>;
  sideTopics: SideTopics;
  tracker: OffsetTracker;
  /** Per source, the commit time of the last transaction applied (tombstone pruning). */
  lastCommitTs: Map<string, bigint>;
  registryUrl: string;
  retryMaxMs: number;
  /**
   * A run of one source that reaches this many events at the end of a source transaction, or
   * holds this many of one transaction not ended yet, is applied while the batch's next events
   * are decoded (BRABANT_APPLY_CHUNK_ROWS: about one fast group, one chunk of a large
   * transaction), so decoding and the node's work on the previous run overlap.
   */
  runEvents: number;
  /** Records (`topic/partition@offset`) the operator said to dead-letter rather than wait for their schema. */
  deadLetterAt: ReadonlySet<string>;
  /** Which sources' events are applied (own-stream.ts). */
  streams: StreamMembership;
  /**
   * Per `topic/partition`, the offset this database says it reads next when that is before the
   * group's committed offset (a database restored from a backup): reading starts there.
   */
  startAt: Map<string, bigint>;
  /** Saves offsets in the database before the group commits them (brabant.apply_offsets). */
  saveOffsets: (commits: OffsetCommit[]) => Promise<void>;
  /**
   * An error while applying ends the session at once (the error policy then says whether the
   * service starts a new one or stops), instead of kafkajs retrying the batch on its own.
   */
  onFailure: (err: unknown) => void;
  /**
   * Makes every transaction applied so far durable on the node. Apply commits with
   * synchronous_commit=off, so a crash of the node can take its last commits, and with them the
   * origin's progress, back; the offsets committed to Kafka must never be ahead of what survives
   * a crash, or those events are never read again. (PostgreSQL's own apply worker reports only
   * flushed positions to its publisher for the same reason.)
   */
  durable: () => Promise<void>;
  log: Logger;
  metrics: ApplyMetrics;
  now?: () => number;
}

/** Which sources' events a node applies, and up to where (own-stream.ts loads it). */
export interface StreamMembership {
  /** This node's own events up to here are applied like a peer's (its database lost them). */
  ownHorizon: Lsn | undefined;
  /** Nodes that left the cluster, and the last commit of theirs applied before they left. */
  parted: ReadonlyMap<string, Lsn>;
}

/** Whether an event of `source` at `commitLsn` is applied on `localNode` (pure). */
export function appliesEvent(
  m: StreamMembership,
  localNode: string,
  source: string,
  commitLsn: Lsn | undefined,
): boolean {
  if (source === localNode)
    return m.ownHorizon !== undefined && commitLsn !== undefined && commitLsn <= m.ownHorizon;
  const through = m.parted.get(source);
  return through === undefined || commitLsn === undefined || commitLsn > through;
}

/**
 * Whether `appliesEvent` needs an event's position to decide (pure): only for this node's own
 * events and a parted node's; every other node's are applied whatever their position.
 */
export function positionDecides(m: StreamMembership, localNode: string, source: string): boolean {
  return source === localNode || m.parted.has(source);
}

/** The run being applied while the next events are decoded (at most one). */
interface RunsInFlight {
  start(p: Promise<Flushed>): void;
  /** Waits for the run in flight, if any, and says how it ended. */
  settle(): Promise<Flushed>;
}

/** Consecutive events of one source read from a batch, and their offsets. */
interface Run {
  source: string;
  changes: DecodedChange[];
  /** Each change's position for the tracker (a split event's first part). */
  offsets: string[];
  /** The highest offset the run consumed. */
  last: string;
  /** Events in the run of a source transaction not ended yet (0 after a transaction's last). */
  openEvents: number;
}

/** How applying a run ended: the stream goes on, or waits at a DDL that failed here. */
type Flushed = 'done' | 'paused';

export class ChangeStream {
  /** Partitions paused on a schema the registry could not give: how many tries so far. */
  private readonly paused = new Map<string, { tries: number; reason: string; timer: NodeJS.Timeout }>();
  private readonly now: () => number;

  constructor(private readonly d: ChangeStreamDeps) {
    this.now = d.now ?? Date.now;
  }

  private failed = false;
  /** Per topic, partition and source: the split event whose parts are arriving, and its first part's offset. */
  private readonly reassemblers = new Map<string, ChunkReassembler>();
  private readonly chunkStart = new Map<string, string>();

  private reassembler(key: string): ChunkReassembler {
    let r = this.reassemblers.get(key);
    if (r === undefined) {
      r = new ChunkReassembler();
      this.reassemblers.set(key, r);
    }
    return r;
  }

  readonly eachBatch = async (payload: EachBatchPayload): Promise<void> => {
    if (this.failed) return;
    try {
      await this.handleBatch(payload);
    } catch (err) {
      // nothing of the failed run was resolved: a new session reads it again
      this.failed = true;
      this.d.onFailure(err);
    }
  };

  /**
   * One Kafka batch. Runs are applied one at a time and in order, but a run that ends a source
   * transaction once it holds `runEvents` events, or holds `runEvents` of one large transaction,
   * is started without waiting for it: the next events are decoded while the node applies it,
   * and the next run starts only after it ended. Every exit waits for the run in flight (an
   * error of it is this batch's error).
   */
  private async handleBatch(payload: EachBatchPayload) {
    let inFlight: Promise<Flushed> | undefined;
    const runs: RunsInFlight = {
      start: (p: Promise<Flushed>) => {
        p.catch(() => {}); // awaited by settle(); no rejection left unhandled meanwhile
        inFlight = p;
      },
      settle: (): Promise<Flushed> => {
        const p = inFlight ?? Promise.resolve('done' as const);
        inFlight = undefined;
        return p;
      },
    };
    let read = false;
    try {
      await this.readBatch(payload, runs);
      read = true;
    } finally {
      const last = runs.settle();
      if (read) await last;
      else await last.catch(() => {}); // the batch's own error is the one that counts
    }
  }

  private async readBatch(
    { batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload,
    runs: RunsInFlight,
  ) {
    const { topic, partition } = batch;
    const d = this.d;
    if (isStale() || !this.startsWhereItShould(batch)) return;
    const done = (offset: string) => {
      resolveOffset(offset);
      d.tracker.handled(topic, partition, BigInt(offset));
    };
    let run: Run | undefined;
    /** The run in flight, then `run`: applied, and the stream moved on past them. */
    const flush = async (): Promise<Flushed> => {
      if ((await runs.settle()) === 'paused') return 'paused';
      if (run === undefined) return 'done';
      const r = run;
      run = undefined;
      return applyRun(r);
    };
    const applyRun = async ({ source, changes, offsets, last: consumed }: Run): Promise<Flushed> => {
      const applier = await d.applierFor(source);
      // a long run (rows waiting on locks local writers hold) must not let the group's session
      // lapse: the coordinator would drop this member and the session start over ("the
      // coordinator is not aware of this member"), the run applied again from its start
      const beat = setInterval(() => void heartbeat().catch(() => {}), HEARTBEAT_DURING_RUN_MS);
      let outcomes: Awaited<ReturnType<typeof applier.handleMany>>;
      try {
        outcomes = await applier.handleMany(changes);
      } finally {
        clearInterval(beat);
      }
      for (const _ of outcomes) failpoint('apply.after-commit');
      if (outcomes.length > 0) d.lastCommitTs.set(source, outcomes[outcomes.length - 1]!.commitTs);
      await d.sideTopics.publish(source, outcomes);
      if (applier.pausedAt !== undefined) {
        // a DDL failed here: what committed before it counts, the stream waits at its transaction
        const { commitLsn, reason } = applier.pausedAt;
        const at = changes.findIndex((x) => x.tx.commitLsn === commitLsn);
        const from = at < 0 ? d.tracker.openOffset(topic, partition, source) : BigInt(offsets[at]!);
        if (at > 0) {
          d.tracker.afterRun(topic, partition, source, BigInt(offsets[at - 1]!), undefined);
          resolveOffset(offsets[at - 1]!);
        }
        const ddl = changes.find(
          (x) => x.tx.commitLsn === commitLsn && x.kind === 'control' && x.control === 'DDL',
        );
        if (!this.paused.has(`${topic}/${partition}`) && ddl !== undefined && ddl.kind === 'control')
          await d.sideTopics.ddlFailed(source, ddl, reason);
        this.pause(topic, partition, String(from ?? BigInt(offsets[0]!)), {
          code: 'DDL_FAILED',
          source,
          message: `DDL_FAILED: ${source}'s DDL at ${topic}/${partition} failed here (${reason}); its stream is paused there and tried again; see brabant.conflicts (kind ddl_failed) and \`brabant ddl resolve\``,
        });
        return 'paused';
      }
      if (outcomes.length > 0 && this.paused.get(`${topic}/${partition}`)?.reason === 'DDL_FAILED')
        this.resumed(topic, partition); // the DDL it waited at went through
      const openLsn = applier.openCommitLsn;
      const first = openLsn === undefined ? -1 : changes.findIndex((x) => x.tx.commitLsn === openLsn);
      const last = consumed;
      d.tracker.afterRun(
        topic,
        partition,
        source,
        BigInt(last),
        openLsn === undefined
          ? undefined
          : { commitLsn: openLsn, firstOffsetInRun: BigInt(offsets[Math.max(first, 0)]!) },
      );
      resolveOffset(consumed);
      await heartbeat();
      return 'done';
    };
    const { messages } = batch;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      // kafkajs's isStale() builds a JSON key per call: asked every 64 messages and at each run
      if (this.failed || ((i & 63) === 0 && (!isRunning() || isStale()))) return;
      const source = m.key?.toString();
      if (
        source === undefined ||
        m.value === null ||
        (positionDecides(d.streams, d.nodeId, source) &&
          !appliesEvent(d.streams, d.nodeId, source, decodePosition(m.headers)?.commitLsn))
      ) {
        if ((await flush()) === 'paused') return;
        done(m.offset);
        continue;
      }
      // a split event (services/protocol/chunks.ts): its parts are joined before decoding, and
      // its position is its first part's, so no offset past that is committed before it applies
      const key = `${topic}/${partition}/${source}`;
      let value = m.value;
      let position = m.offset;
      try {
        const parts = this.reassembler(key).push({ value, chunk: m.headers?.[HEADER_CHUNK]?.toString() });
        if (parts.kind === 'pending') {
          if (!this.chunkStart.has(key)) this.chunkStart.set(key, m.offset);
          resolveOffset(m.offset);
          continue;
        }
        if (parts.kind === 'duplicate') {
          // consumed with the run it falls in; else handled once what came before it is
          if (run !== undefined) run.last = m.offset;
          else if ((await flush()) === 'paused') return;
          else done(m.offset);
          continue;
        }
        value = parts.value;
        if (parts.kind === 'joined') {
          position = this.chunkStart.get(key) ?? m.offset;
          this.chunkStart.delete(key);
        }
      } catch (err) {
        if (!isBrabantError(err, 'UNDECODABLE')) throw err;
        this.chunkStart.delete(key);
        if ((await flush()) === 'paused') return;
        d.log.error(
          { source, topic, partition, offset: m.offset, reason: err.message },
          'a split event cannot be joined: sent to the dead-letter topic',
        );
        await d.sideTopics.poison(source, { topic, partition, offset: m.offset }, m.value, err.message);
        done(m.offset);
        continue;
      }
      let change: DecodedChange;
      try {
        change = await d.decoder.decode(value, m.headers);
      } catch (err) {
        if ((await flush()) === 'paused') return;
        const at = `${topic}/${partition}@${m.offset}`;
        if (
          isBrabantError(err, 'UNDECODABLE') ||
          (isBrabantError(err, 'SCHEMA_UNAVAILABLE') && d.deadLetterAt.has(at))
        ) {
          d.log.error(
            { source, topic, partition, offset: m.offset, reason: err.message },
            'poison message sent to the dead-letter topic',
          );
          await d.sideTopics.poison(source, { topic, partition, offset: m.offset }, m.value, err.message);
          done(m.offset);
          continue;
        }
        if (isBrabantError(err) && err.retriable) {
          this.pause(topic, partition, m.offset, {
            code: err.code,
            source,
            message:
              `${err.code}: the schema of ${source}'s record at ${at} cannot be read from the registry ${d.registryUrl}; ` +
              'its stream is paused there (nothing is skipped) and tried again. Fix the registry (BRABANT_REGISTRY_URL, its storage); ' +
              `only for a record known to be garbage, set BRABANT_APPLY_DEAD_LETTER_AT=${at}`,
            fields: { registry: d.registryUrl, reason: err.message },
          });
          return;
        }
        throw err;
      }
      if (this.paused.get(`${topic}/${partition}`)?.reason !== 'DDL_FAILED') this.resumed(topic, partition);
      if (run !== undefined && run.source !== source && (await flush()) === 'paused') return;
      if (run === undefined) run = { source, changes: [], offsets: [], last: m.offset, openEvents: 0 };
      run.changes.push(change);
      run.offsets.push(position);
      run.last = m.offset;
      run.openEvents = change.tx.last ? 0 : run.openEvents + 1;
      // small transactions stay whole in a run (the group strategies apply many per round
      // trip); a large one is cut every runEvents events, so a batch of it is not all held
      // decoded at once (the applier keeps a transaction open across runs as across batches)
      if ((change.tx.last && run.changes.length >= d.runEvents) || run.openEvents >= d.runEvents) {
        // applied while the next events are decoded; one run in flight at a time
        if ((await runs.settle()) === 'paused' || !isRunning() || isStale()) return;
        const r = run;
        run = undefined;
        runs.start(applyRun(r));
      }
    }
    if ((await flush()) === 'paused') return;
    await this.commit(topic, partition, false);
  }

  /**
   * On joining the group, each assigned partition with a start offset of its own is sought
   * there: a partition with nothing newer than the group's offset brings no batch, so the check
   * below alone would leave the gap unread until the source writes again.
   */
  seekStarts(assignment: Record<string, number[]>): void {
    for (const [topic, partitions] of Object.entries(assignment))
      for (const partition of partitions) {
        const start = this.d.startAt.get(`${topic}/${partition}`);
        if (start === undefined) continue;
        this.d.log.info(
          { topic, partition, from: String(start) },
          'reading from where this database says it read, before the consumer group’s newer offset',
        );
        this.d.consumer.seek({ topic, partition, offset: String(start) });
      }
  }

  /**
   * The first batch of a partition with a start offset of its own (`startAt`) must begin there:
   * a batch fetched from later is dropped and the partition sought back, once (a later fetched
   * offset after that is Kafka skipping control records).
   */
  private readonly sought = new Set<string>();
  private startsWhereItShould(batch: EachBatchPayload['batch']): boolean {
    const key = `${batch.topic}/${batch.partition}`;
    const start = this.d.startAt.get(key);
    if (start === undefined) return true;
    const fetched = BigInt((batch as unknown as { fetchedOffset: string }).fetchedOffset);
    if (fetched <= start || this.sought.has(key)) {
      this.d.startAt.delete(key);
      return true;
    }
    this.sought.add(key);
    this.d.log.info(
      { topic: batch.topic, partition: batch.partition, from: String(start), group: String(fetched) },
      'reading from where this database says it read, before the consumer group’s newer offset',
    );
    this.d.consumer.seek({ topic: batch.topic, partition: batch.partition, offset: String(start) });
    return false;
  }

  /** Commits what is due for a partition (`force`: at stop). */
  async commit(topic: string, partition: number, force: boolean): Promise<void> {
    const c = this.d.tracker.due(topic, partition, this.now(), force);
    if (c === undefined) return;
    await this.commitOffsets([c]);
  }

  async commitAll(): Promise<void> {
    const due = this.d.tracker.allDue(this.now());
    if (due.length > 0) await this.commitOffsets(due);
  }

  /**
   * The database first, then the group: what the offsets cover is made durable on the node (a
   * synchronous commit flushes the asynchronous ones before it), the database's offsets are saved,
   * and only then does the group move; neither is ever ahead of what the node holds.
   */
  private async commitOffsets(commits: OffsetCommit[]): Promise<void> {
    await this.d.durable();
    await this.d.saveOffsets(commits);
    await this.d.consumer.commitOffsets(commits);
    for (const c of commits) this.d.tracker.committed(c, this.now());
  }

  stop(): void {
    for (const p of this.paused.values()) clearTimeout(p.timer);
    this.paused.clear();
  }

  /** Pauses a partition at `offset` and resumes it after a backoff that grows with each try. */
  private pause(
    topic: string,
    partition: number,
    offset: string,
    why: { code: string; source: string; message: string; fields?: Record<string, unknown> },
  ): void {
    const key = `${topic}/${partition}`;
    const tries = (this.paused.get(key)?.tries ?? 0) + 1;
    const wait = backoffDelay(tries, { initialMs: 500, maxMs: this.d.retryMaxMs });
    const { consumer, log, metrics } = this.d;
    consumer.seek({ topic, partition, offset });
    consumer.pause([{ topic, partitions: [partition] }]);
    metrics.pausedStreams.set(1, { topic, partition: String(partition), reason: why.code });
    metrics.streamPauses.inc({ reason: why.code });
    log.warn(
      { code: why.code, source: why.source, topic, partition, offset, tries, retryInMs: wait, ...why.fields },
      why.message,
    );
    const timer = setTimeout(() => consumer.resume([{ topic, partitions: [partition] }]), wait);
    this.paused.set(key, { tries, reason: why.code, timer });
  }

  private resumed(topic: string, partition: number): void {
    const key = `${topic}/${partition}`;
    const p = this.paused.get(key);
    if (p === undefined) return;
    this.paused.delete(key);
    this.d.metrics.pausedStreams.set(0, { topic, partition: String(partition), reason: p.reason });
    this.d.log.info(
      { topic, partition, reason: p.reason },
      'stream resumed: what it waited for went through',
    );
  }
}
