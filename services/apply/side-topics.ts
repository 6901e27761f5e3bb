/**
 * What apply writes to Kafka besides the node (I/O shell): the conflicts its transactions
 * resolved, on `brabant.conflicts`, and the changes it could not apply or decode, on
 * `brabant.deadletter`, each with what a person needs to repair it. One send per run of
 * transactions, not one per transaction.
 */
import type { Producer } from 'kafkajs';
import type { ControlChange } from '../protocol/change-decoder.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { CONFLICTS_TOPIC, DEAD_LETTER_TOPIC } from '../protocol/topics.ts';
import type { ApplyMetrics } from './metrics.ts';
import { changeMessage, conflictMessage } from './outcome/conflict-log.ts';
import type { TxOutcome } from './outcome/outcome.ts';

/** Headers of a dead letter: why, and where it came from. */
export const DEAD_LETTER_HEADERS = {
  reason: 'brabant.reason',
  targetNode: 'brabant.target-node',
  commitLsn: 'brabant.commit-lsn',
  index: 'brabant.index',
  sourceTopic: 'brabant.source-topic',
  sourcePartition: 'brabant.source-partition',
  sourceOffset: 'brabant.source-offset',
} as const;

export class SideTopics {
  constructor(
    private readonly producer: Producer,
    private readonly node: string,
    private readonly metrics: ApplyMetrics,
  ) {}

  /** The conflicts and dead letters of a source's committed transactions. */
  async publish(source: string, outcomes: TxOutcome[]): Promise<void> {
    const conflicts = outcomes.flatMap((o) =>
      o.conflicts.map((x) => ({ key: this.node, value: JSON.stringify(conflictMessage(this.node, x)) })),
    );
    if (conflicts.length > 0) await this.producer.send({ topic: CONFLICTS_TOPIC, messages: conflicts });
    const deadLetters = outcomes.flatMap((o) => o.deadLetters);
    if (deadLetters.length === 0) return;
    await this.producer.send({
      topic: DEAD_LETTER_TOPIC,
      messages: deadLetters.map((d) => ({
        key: source,
        value: JSON.stringify(changeMessage(d.change)),
        headers: {
          [DEAD_LETTER_HEADERS.reason]: d.reason,
          [DEAD_LETTER_HEADERS.targetNode]: this.node,
          [DEAD_LETTER_HEADERS.commitLsn]: String(d.change.tx.commitLsn),
          [DEAD_LETTER_HEADERS.index]: String(d.change.tx.index),
        },
      })),
    });
    // by table, not by the reason's text (which names values and constraints: unbounded)
    for (const d of deadLetters)
      this.metrics.deadLetters.inc({ reason: 'row', table: `${d.change.schema}.${d.change.table}` });
  }

  /** A DDL that failed on this node (its stream is paused at it): the event, and why. */
  async ddlFailed(source: string, change: ControlChange, reason: string): Promise<void> {
    await this.producer.send({
      topic: DEAD_LETTER_TOPIC,
      messages: [
        {
          key: source,
          value: JSON.stringify({
            kind: 'ddl',
            origin: change.origin,
            tx: {
              ...change.tx,
              xid: String(change.tx.xid),
              commitLsn: formatLsn(change.tx.commitLsn),
              commitTs: String(change.tx.commitTs),
            },
            event: JSON.parse(change.content.toString('utf8')),
          }),
          headers: {
            [DEAD_LETTER_HEADERS.reason]: `DDL failed: ${reason}`,
            [DEAD_LETTER_HEADERS.targetNode]: this.node,
            [DEAD_LETTER_HEADERS.commitLsn]: String(change.tx.commitLsn),
            [DEAD_LETTER_HEADERS.index]: String(change.tx.index),
          },
        },
      ],
    });
    this.metrics.deadLetters.inc({ reason: 'ddl_failed' });
  }

  /** A message that cannot be decoded at all: its raw bytes, with where it came from and why. */
  async poison(
    source: string,
    at: { topic: string; partition: number; offset: string },
    value: Buffer,
    reason: string,
  ): Promise<void> {
    await this.producer.send({
      topic: DEAD_LETTER_TOPIC,
      messages: [
        {
          key: source,
          value,
          headers: {
            [DEAD_LETTER_HEADERS.reason]: reason,
            [DEAD_LETTER_HEADERS.sourceTopic]: at.topic,
            [DEAD_LETTER_HEADERS.sourcePartition]: String(at.partition),
            [DEAD_LETTER_HEADERS.sourceOffset]: at.offset,
            [DEAD_LETTER_HEADERS.targetNode]: this.node,
          },
        },
      ],
    });
    this.metrics.deadLetters.inc({ reason: 'undecodable' });
  }
}
