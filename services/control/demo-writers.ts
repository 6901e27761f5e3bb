/**
 * The demo's writers: one per region, connected to its region's router (never to a node), each
 * transaction a new row and an increment of one of the hot rows both regions fight over —
 * `qty` under last-writer-wins, `counter` under the delta policy. Every failed transaction is
 * counted (the demo promises none), and how long each took, so a switchover shows how long
 * writes waited. Each writes at most `ratePerSec` transactions a second: a steady load that the
 * demo's two cores apply as it comes, rather than a flood that leaves apply ever further behind
 * (a switchover waits for the new leader to catch up).
 */
import pg from 'pg';

export interface WriterStats {
  region: string;
  committed: number;
  failed: number;
  errors: string[];
  /** Longest transaction, and the longest while `marking` was on (the switchover). */
  longestMs: number;
  longestMarkedMs: number;
}

export class Writer {
  readonly stats: WriterStats;
  private running = true;
  marking = false;
  private client: pg.Client | undefined;
  private done: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    region: string,
    private readonly base: number,
    private readonly hotKeys: number,
    private readonly ratePerSec: number,
  ) {
    this.stats = { region, committed: 0, failed: 0, errors: [], longestMs: 0, longestMarkedMs: 0 };
  }

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<WriterStats> {
    this.running = false;
    await this.done;
    await this.client?.end().catch(() => {});
    return this.stats;
  }

  private async connect(): Promise<pg.Client> {
    const c = new pg.Client({
      connectionString: this.url,
      application_name: `brabant-demo-${this.stats.region}`,
    });
    c.on('error', () => {});
    await c.connect();
    return c;
  }

  private async loop(): Promise<void> {
    let i = 0;
    while (this.running) {
      i++;
      const started = Date.now();
      const marked = this.marking;
      try {
        this.client ??= await this.connect();
        const c = this.client;
        await c.query('begin');
        await c.query(
          `insert into items (id, region, qty, payload, updated_at) values ($1::bigint, $2, $3, md5($1::text), now())`,
          [this.base + i, this.stats.region, i],
        );
        await c.query(
          `update items set qty = qty + 1, counter = counter + 1, region = $2, updated_at = now() where id = $1`,
          [1 + (i % this.hotKeys), this.stats.region],
        );
        await c.query('commit');
        this.stats.committed++;
      } catch (err) {
        this.stats.failed++;
        if (this.stats.errors.length < 5) this.stats.errors.push((err as Error).message);
        await this.client?.end().catch(() => {});
        this.client = undefined;
      }
      const took = Date.now() - started;
      this.stats.longestMs = Math.max(this.stats.longestMs, took);
      if (marked || this.marking) this.stats.longestMarkedMs = Math.max(this.stats.longestMarkedMs, took);
      const rest = 1000 / this.ratePerSec - took;
      if (rest > 0) await new Promise((r) => setTimeout(r, rest));
    }
  }
}
