/**
 * A writer that records every write it knows committed: one row of its own per transaction
 * (`id` unique to the writer, `v` its value), recorded only once COMMIT has returned. A write whose
 * COMMIT did not answer (the node went away) is not recorded: it may or may not have committed, and
 * either way the nodes must end identical. The writer stays connected as an application would and,
 * when its connection is lost, connects again until the node is back.
 */
import pg from 'pg';
import type { Side } from './pair.ts';

export interface RecordedWriter {
  /** Every committed write: id → value. */
  readonly committed: Map<string, string>;
  /** Transactions whose COMMIT never answered (not recorded). */
  readonly uncertain: () => number;
  /** Writes again after pause(). */
  resume(): void;
  /** Stops writing; resolves once no transaction of it is in flight. */
  pause(): Promise<void>;
  /** Stops for good and disconnects. */
  stop(): Promise<void>;
}

/** Starts writing to `table (id text primary key, v text)` on `side`, ids `<prefix>-<n>`, about one write per `pauseMs`. */
export function startRecordedWriter(side: Side, table: string, prefix: string, pauseMs = 5): RecordedWriter {
  const committed = new Map<string, string>();
  let uncertain = 0;
  let n = 0;
  let writing = true;
  let stopped = false;
  let client: pg.Client | undefined;
  let wake: (() => void) | undefined;
  let idle: (() => void) | undefined;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const connect = async (): Promise<pg.Client> => {
    for (;;) {
      const c = new pg.Client({ connectionString: side.url });
      // the node ends this session when it stops: that must not become an uncaught error
      c.on('error', () => {});
      try {
        await c.connect();
        return c;
      } catch {
        await c.end().catch(() => {});
        if (stopped) throw new Error('stopped');
        await sleep(200);
      }
    }
  };

  const loop = (async () => {
    while (!stopped) {
      if (!writing) {
        idle?.();
        await new Promise<void>((r) => {
          wake = r;
        });
        continue;
      }
      try {
        client ??= await connect();
      } catch {
        break;
      }
      const id = `${prefix}-${++n}`;
      const v = `${prefix} write ${n} at ${Date.now()}`;
      let began = false;
      try {
        await client.query('begin');
        began = true;
        await client.query(`insert into ${table} (id, v) values ($1, $2)`, [id, v]);
        await client.query('commit');
        committed.set(id, v);
      } catch {
        if (began) uncertain++;
        const lost = client;
        client = undefined;
        await lost.end().catch(() => {});
        await sleep(100);
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
    idle?.();
  })();

  return {
    committed,
    uncertain: () => uncertain,
    resume() {
      writing = true;
      wake?.();
      wake = undefined;
    },
    async pause() {
      if (!writing) return;
      await new Promise<void>((r) => {
        idle = r;
        writing = false;
      });
      idle = undefined;
    },
    async stop() {
      stopped = true;
      writing = false;
      wake?.();
      await loop;
      await client?.end().catch(() => {});
    },
  };
}

/** Which of `writers`' committed writes `rows` (tableRows' JSON lines of the table) lack, or hold with another value. */
export function missingWrites(rows: string[], writers: RecordedWriter[]): string[] {
  const got = new Map<string, string>();
  for (const r of rows) {
    const row = JSON.parse(r) as { id: string; v: string };
    got.set(row.id, row.v);
  }
  const missing: string[] = [];
  for (const w of writers) for (const [id, v] of w.committed) if (got.get(id) !== v) missing.push(id);
  return missing;
}
