/**
 * The replication connection (I/O shell): START_REPLICATION on the slot with pgoutput through
 * pg-logical-replication, our own decoder, and our own acknowledgements. The library's auto-ack
 * and its periodic timer both ack the last *received* LSN, which can lose data on a crash (see
 * DESIGN.md), so both are off; keepalives and a periodic status update carry the last LSN the
 * pipeline reported durable, never more.
 */
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { formatLsn, type Lsn, parseLsn, ZERO_LSN } from '../protocol/lsn.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { SQLSTATE } from '../runtime/sqlstate.ts';
import { DecodeError } from './pgoutput/binary-reader.ts';
import { decodePgoutput, undecodable } from './pgoutput/decoder.ts';
import type { PgoutputMessage } from './pgoutput/messages.ts';

/** The library's pgoutput plugin with Brabant's decoder (raw text values, unchanged-TOAST markers, typed errors). */
class BrabantPgoutputPlugin extends PgoutputPlugin {
  constructor(
    private readonly pgoutput: ConstructorParameters<typeof PgoutputPlugin>[0],
    private readonly rawBytes: boolean,
    private readonly originNone: boolean,
  ) {
    super(pgoutput);
  }

  /**
   * node-pg asks for client_encoding UTF8 at startup. A SQL_ASCII database stores any bytes, and
   * PostgreSQL then checks each value sent as UTF-8 and fails the whole stream on one that is not
   * ("invalid byte sequence for encoding UTF8"). In such a database capture takes the bytes as
   * stored (SQL_ASCII: no conversion) and judges each value itself: a value that is not UTF-8 is
   * dead-lettered, the rest of the stream goes on.
   */
  override async start(...args: Parameters<PgoutputPlugin['start']>): ReturnType<PgoutputPlugin['start']> {
    const [client, slot, lastLsn] = args;
    if (this.rawBytes) await client.query("set client_encoding to 'SQL_ASCII'");
    if (!this.originNone) return super.start(...args);
    // PostgreSQL 16+: the server leaves out every transaction that carries a replication origin
    // (what apply wrote from the peers), so neither the walsender nor capture spends anything on
    // what capture would skip anyway
    const o = this.pgoutput;
    return client.query(
      `START_REPLICATION SLOT "${slot.replace(/"/g, '""')}" LOGICAL ${lastLsn} (proto_version '${o.protoVersion}', publication_names '${o.publicationNames.join(',')}', messages '${o.messages ?? false}', origin 'none')`,
    );
  }

  // The base class types parse() with its own message shape; ours reaches our own 'data' handler.
  override parse(buffer: Buffer): ReturnType<PgoutputPlugin['parse']> {
    let parsed: PgoutputMessage;
    try {
      parsed = decodePgoutput(buffer);
    } catch (error) {
      // Not fatal here: the pipeline dead-letters an undecodable change and goes on, and stops
      // only where the stream's structure (Begin, Commit) is at stake.
      const where = error instanceof DecodeError ? error.message : String(error);
      parsed = undecodable(buffer, where);
    }
    return parsed as unknown as ReturnType<PgoutputPlugin['parse']>;
  }
}

/**
 * Session settings of the replication connection: the text forms the schema mapper expects.
 * Output functions run in the walsender with these settings.
 */
export const REPLICATION_SESSION_OPTIONS =
  '-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex';

export interface StreamOptions {
  url: string;
  slot: string;
  /** The node captured (named in the repair a lost slot needs). */
  node: string;
  publications: string[];
  /** The database's encoding is SQL_ASCII: take values as stored bytes (see BrabantPgoutputPlugin.start). */
  rawBytes?: boolean;
  /** PostgreSQL 16 and later: ask for `origin 'none'` (transactions applied from peers are not sent). */
  originNone?: boolean;
  /** Status update period, well under the server's wal_sender_timeout. */
  statusIntervalMs: number;
  log: Logger;
  onMessage(msg: PgoutputMessage): Promise<void>;
}

export class ReplicationStream {
  private readonly service: LogicalReplicationService;
  private durable: Lsn = ZERO_LSN;
  private failure: unknown;
  private statusTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private draining = false;
  private lastServerLsn: Lsn = ZERO_LSN;

  constructor(private readonly opts: StreamOptions) {
    this.service = new LogicalReplicationService(
      { connectionString: opts.url, options: REPLICATION_SESSION_OPTIONS },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
    );
  }

  /** The highest WAL position the server has told us about (for lag). */
  get serverLsn(): Lsn {
    return this.lastServerLsn;
  }

  /** Everything before `endLsn` is in Kafka: the slot may move there. Never moves backwards. */
  confirm(endLsn: Lsn): void {
    if (endLsn <= this.durable) return;
    this.durable = endLsn;
  }

  get confirmed(): Lsn {
    return this.durable;
  }

  /** Streams until stop() or an error; rejects with a typed error. */
  async run(): Promise<void> {
    const s = this.service;
    let failed: (err: unknown) => void = () => {};
    const failedPromise = new Promise<never>((_, reject) => {
      failed = reject;
    });
    const fail = (err: unknown) => {
      if (this.failure !== undefined || this.stopping) return;
      this.failure = classifyStreamError(err, this.opts.slot, this.opts.node);
      failed(this.failure);
      void s.stop().catch(() => {});
    };
    s.on('data', async (_lsn: string, msg: PgoutputMessage) => {
      // Once draining, later messages are not handled; unconfirmed, they come again next session.
      if (this.failure !== undefined || this.stopping || this.draining) return;
      try {
        await this.opts.onMessage(msg);
      } catch (err) {
        fail(classifyPipelineError(err));
      }
    });
    s.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
      const l = parseLsn(lsn);
      if (l > this.lastServerLsn) this.lastServerLsn = l;
      if (shouldRespond) this.sendStatus();
    });
    s.on('error', (err: Error) => fail(err));
    this.statusTimer = setInterval(() => this.sendStatus(), this.opts.statusIntervalMs);
    try {
      const plugin = new BrabantPgoutputPlugin(
        { protoVersion: 1, publicationNames: this.opts.publications, messages: true },
        this.opts.rawBytes ?? false,
        this.opts.originNone ?? false,
      );
      // 0/0: start where the slot's confirmed position is.
      await Promise.race([s.subscribe(plugin, this.opts.slot, '0/0'), failedPromise]);
      if (this.failure !== undefined) throw this.failure;
      if (!this.stopping)
        throw new BrabantError('SOURCE_UNAVAILABLE', 'replication stream ended unexpectedly');
    } catch (err) {
      if (this.stopping && this.failure === undefined) return;
      throw this.failure ?? classifyStreamError(err, this.opts.slot, this.opts.node);
    } finally {
      clearInterval(this.statusTimer);
    }
  }

  /** Stops handing messages to the pipeline (graceful stop: flush next, then stop()). */
  drain(): void {
    this.draining = true;
  }

  /** Sends a last status update with the durable position, then closes the connection. */
  async stop(): Promise<void> {
    this.sendStatus();
    this.stopping = true;
    clearInterval(this.statusTimer);
    await this.service.stop().catch(() => {});
  }

  private sendStatus(): void {
    if (this.durable === ZERO_LSN) return;
    // The library writes "given LSN + 1" as written/flushed/applied; pass durable - 1 so the
    // server gets exactly the end LSN we confirm, never a byte more.
    void this.service.acknowledge(formatLsn((this.durable - 1n) as Lsn)).catch(() => {});
  }
}

/** SQLSTATE classes and socket errors that mean the node went away (retrying can help). */
const CONNECTION_SQLSTATE = /^(08|57P0[1-3]|53)/;
const SOCKET_ERRORS = ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND'];

/**
 * An error from handling one message (the pipeline: catalog look-ups, registry, Kafka). Typed
 * errors keep their class; a lost node connection is retriable; anything else is a bug in
 * Brabant that a retry would only repeat, so it stops capture instead of looping forever.
 */
export function classifyPipelineError(err: unknown): BrabantError {
  if (err instanceof BrabantError) return err;
  const e = err as { code?: string; message?: string };
  const message = e?.message ?? String(err);
  if (typeof e?.code === 'string' && (CONNECTION_SQLSTATE.test(e.code) || SOCKET_ERRORS.includes(e.code)))
    return new BrabantError('SOURCE_UNAVAILABLE', `node connection failed: ${message}`, { cause: err });
  if (/Connection terminated|connection is closed|Client has encountered a connection error/i.test(message))
    return new BrabantError('SOURCE_UNAVAILABLE', `node connection failed: ${message}`, { cause: err });
  return new BrabantError(
    'INTERNAL_ERROR',
    `capture failed on an unexpected error (${message}); this is a bug in Brabant: report it with the log, then restart capture`,
    { cause: err },
  );
}

function classifyStreamError(err: unknown, slot: string, node: string): BrabantError {
  if (err instanceof BrabantError) return err;
  const e = err as { code?: string; message?: string };
  const message = e?.message ?? String(err);
  if (e?.code === SQLSTATE.UNDEFINED_OBJECT || /replication slot .* does not exist/.test(message)) {
    return new BrabantError(
      'SLOT_LOST',
      `replication slot ${slot} no longer exists (${message}); changes committed since its last confirmed position ` +
        'may never reach Kafka. To repair: set BRABANT_CAPTURE_RECREATE_SLOT=true and restart capture, then re-send the ' +
        `node's current rows with \`brabant resync ${node}\` (peers keep what is newer; docs/capture.md, "Resync")`,
    );
  }
  if (e?.code === SQLSTATE.OBJECT_IN_USE || /is active for PID/.test(message)) {
    return new BrabantError(
      'SLOT_IN_USE',
      `replication slot ${slot} is in use by another process (${message}): another capture for this node is running; stop it first`,
    );
  }
  if (typeof e?.code === 'string' && e.code.startsWith('22')) {
    // A data error raised by the walsender itself (e.g. a value its encoding conversion refuses):
    // the same transaction fails again on every retry, so retrying forever would only hide it.
    return new BrabantError(
      'VALUE_UNREPRESENTABLE',
      `PostgreSQL cannot send a change of slot ${slot} (${message}, SQLSTATE ${e.code}); fix or remove the value ` +
        'on the node (its log names the transaction), then restart capture',
      { cause: err },
    );
  }
  return new BrabantError('SOURCE_UNAVAILABLE', `replication connection failed: ${message}`, { cause: err });
}
