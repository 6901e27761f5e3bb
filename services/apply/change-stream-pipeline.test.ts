/**
 * ChangeStream's runs in flight (change-stream.ts): a run that ends a source transaction at
 * `runEvents` is applied while the next events are decoded, yet runs are applied one at a time,
 * in order; a run that pauses at a failed DDL or fails stops the batch there, with nothing after
 * it applied and no offset past it resolved.
 */
import type { EachBatchPayload } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import type { ChangeDecoder, DecodedChange } from '../protocol/change-decoder.ts';
import { type Lsn, lsn } from '../protocol/lsn.ts';
import { createLogger } from '../runtime/log.ts';
import { ChangeStream, type ChangeStreamDeps } from './change-stream.ts';
import { applyMetrics } from './metrics.ts';
import { OffsetTracker } from './offset-tracker.ts';
import type { OriginApplier } from './origin-applier.ts';
import type { TxOutcome } from './outcome/outcome.ts';
import type { SideTopics } from './side-topics.ts';

const SOURCE = 'wa-1';
const TX_EVENTS = 2;

/** Event `i` of the stream: transactions of `txEvents` rows, commit LSNs 100, 200, … */
function event(i: number, txEvents: number): DecodedChange {
  const tx = Math.floor(i / txEvents);
  const index = i % txEvents;
  return {
    kind: 'row',
    origin: { region: 'wallonie', node: SOURCE },
    tx: {
      xid: BigInt(tx),
      commitLsn: lsn(BigInt((tx + 1) * 100)),
      commitTs: 0n,
      index,
      last: index === txEvents - 1,
    },
    op: 'INSERT',
    schema: 'public',
    table: 't',
    key: { id: String(i) },
    before: null,
    after: { id: String(i) },
  };
}

type Step = { run: number; commitLsns: Lsn[]; keys: string[] };

/** A stream over `events` events with an applier whose runs `behave` says how to end. */
function harness(
  events: number,
  behave: (run: number, changes: DecodedChange[], applier: { pausedAt?: unknown }) => Promise<void>,
  keyOf: (i: number) => string = () => SOURCE,
  txEvents = TX_EVENTS,
) {
  const log: string[] = [];
  const applied: Step[] = [];
  const resolved: string[] = [];
  const sought: string[] = [];
  const failures: unknown[] = [];
  let runs = 0;
  let inFlight = 0;
  let mostInFlight = 0;
  const applier = {
    pausedAt: undefined as { commitLsn: Lsn; reason: string } | undefined,
    openCommitLsn: undefined,
    async handleMany(changes: DecodedChange[]): Promise<TxOutcome[]> {
      const run = ++runs;
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      log.push(`apply ${run} start`);
      try {
        await behave(run, changes, applier);
      } finally {
        inFlight--;
      }
      log.push(`apply ${run} end`);
      if (applier.pausedAt !== undefined) return [];
      const lsns = [...new Set(changes.map((c) => c.tx.commitLsn))];
      applied.push({
        run,
        commitLsns: lsns,
        keys: changes.map((c) => (c.kind === 'row' ? String(c.key?.id) : c.kind)),
      });
      return lsns.map((commitLsn) => ({
        commitLsn,
        commitTs: 0n,
        rows: TX_EVENTS,
        conflicts: [],
        deadLetters: [],
      }));
    },
  };
  const decoder = {
    async decode(value: Buffer) {
      const i = Number(value.toString());
      log.push(`decode ${i}`);
      return event(i, txEvents);
    },
  } as unknown as ChangeDecoder;
  const consumer = {
    seek: (p: { offset: string }) => sought.push(p.offset),
    pause: () => {},
    resume: () => {},
    commitOffsets: async () => {},
  };
  const deps: ChangeStreamDeps = {
    nodeId: 'vl-1',
    consumer: consumer as unknown as ChangeStreamDeps['consumer'],
    decoder,
    applierFor: async () => applier as unknown as OriginApplier,
    sideTopics: {
      publish: async () => {},
      ddlFailed: async () => {},
      poison: async () => {},
    } as unknown as SideTopics,
    tracker: new OffsetTracker(0),
    lastCommitTs: new Map(),
    registryUrl: 'http://127.0.0.1:1',
    retryMaxMs: 1_000,
    runEvents: TX_EVENTS,
    deadLetterAt: new Set(),
    streams: { ownHorizon: undefined, parted: new Map() },
    startAt: new Map(),
    saveOffsets: async () => {},
    onFailure: (err) => failures.push(err),
    durable: async () => {},
    log: createLogger('test', 'silent'),
    metrics: applyMetrics(),
  };
  const stream = new ChangeStream(deps);
  const payload = {
    batch: {
      topic: 'brabant.changes.wallonie',
      partition: 0,
      messages: Array.from({ length: events }, (_, i) => ({
        offset: String(i),
        key: Buffer.from(keyOf(i)),
        value: Buffer.from(String(i)),
        headers: {},
      })),
    },
    resolveOffset: (o: string) => resolved.push(o),
    heartbeat: async () => {},
    isRunning: () => true,
    isStale: () => false,
  } as unknown as EachBatchPayload;
  return {
    run: () => stream.eachBatch(payload),
    log,
    applied,
    resolved,
    sought,
    failures,
    mostInFlight: () => mostInFlight,
    stream,
  };
}

/** Lets the event loop turn a few times, so what can run meanwhile does. */
const turns = () => new Promise((r) => setTimeout(r, 5));

describe('ChangeStream: a run applied while the next events are decoded', () => {
  it('decodes the next run while one is applied, applies runs one at a time in order, and resolves every offset', async () => {
    const h = harness(8, async () => {
      await turns();
    });
    await h.run();
    expect(h.failures).toEqual([]);
    expect(h.applied.map((s) => s.commitLsns)).toEqual([[lsn(100n)], [lsn(200n)], [lsn(300n)], [lsn(400n)]]);
    expect(h.mostInFlight()).toBe(1);
    // the second transaction's events were decoded before the first run ended
    expect(h.log.indexOf('decode 2')).toBeLessThan(h.log.indexOf('apply 1 end'));
    expect(h.log.indexOf('decode 3')).toBeLessThan(h.log.indexOf('apply 1 end'));
    // and the second run started only after it
    expect(h.log.indexOf('apply 1 end')).toBeLessThan(h.log.indexOf('apply 2 start'));
    expect(h.resolved).toEqual(['1', '3', '5', '7']);
  });

  it('cuts a run only at the end of a source transaction', async () => {
    // runEvents is TX_EVENTS: a run never holds half a transaction
    const h = harness(6, async () => {});
    await h.run();
    expect(h.applied.map((s) => s.commitLsns.length)).toEqual([1, 1, 1]);
  });

  it('cuts a large transaction every runEvents events, applied in order, so a batch of it is not all held decoded', async () => {
    const h = harness(
      7,
      async () => {
        await turns();
      },
      undefined,
      7,
    );
    await h.run();
    expect(h.failures).toEqual([]);
    expect(h.applied.map((s) => s.keys)).toEqual([['0', '1'], ['2', '3'], ['4', '5'], ['6']]);
    expect(h.applied.every((s) => s.commitLsns.join() === String(lsn(100n)))).toBe(true);
    expect(h.mostInFlight()).toBe(1);
    // the third part was decoded while the second was applied, not before the first was handed on
    expect(h.log.indexOf('decode 4')).toBeLessThan(h.log.indexOf('apply 2 end'));
    expect(h.log.indexOf('decode 4')).toBeGreaterThan(h.log.indexOf('apply 1 start'));
  });

  it('stops at a run that pauses at a failed DDL: nothing after it applied, no offset past it resolved', async () => {
    const h = harness(8, async (run, changes, applier) => {
      await turns();
      if (run === 2) applier.pausedAt = { commitLsn: changes[0]!.tx.commitLsn, reason: 'relation exists' };
    });
    await h.run();
    expect(h.failures).toEqual([]);
    expect(h.applied.map((s) => s.run)).toEqual([1]);
    expect(h.log).not.toContain('apply 3 start');
    // the stream is sought back to the paused transaction's first event (offset 2)
    expect(h.sought).toEqual(['2']);
    expect(h.resolved).toEqual(['1']);
    h.stream.stop();
  });

  it('ends the session on a run that fails, after the run before it, and applies nothing after it', async () => {
    const boom = new Error('connection terminated');
    const h = harness(8, async (run) => {
      await turns();
      if (run === 2) throw boom;
    });
    await h.run();
    expect(h.failures).toEqual([boom]);
    expect(h.applied.map((s) => s.run)).toEqual([1]);
    expect(h.log).not.toContain('apply 3 start');
    expect(h.resolved).toEqual(['1']);
  });

  it("skips this node's own events (no position needed) and resolves their offsets in order", async () => {
    // events 0–1 and 4–5 are vl-1's own (this node): not applied, handled after what came before
    const h = harness(
      6,
      async () => {},
      (i) => (i === 0 || i === 1 || i === 4 || i === 5 ? 'vl-1' : SOURCE),
    );
    await h.run();
    expect(h.applied.map((s) => s.commitLsns)).toEqual([[lsn(200n)]]);
    expect(h.resolved).toEqual(['0', '1', '3', '4', '5']);
  });
});
