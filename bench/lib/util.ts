/** Small helpers of the benchmarks: a wall clock in ms with sub-ms precision, statistics, logging. */
import { randomBytes } from 'node:crypto';
import { waitFor } from '../../infra/processes.ts';

/** Wall-clock milliseconds (Unix epoch) with sub-millisecond precision, monotonic within this process. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function say(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** A short name part unique to this process run: letters and digits only. */
export function tag(): string {
  return randomBytes(4).toString('hex');
}

/** Percentile by nearest rank (p in 0..100) of unsorted values; NaN for none. */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: number[]): number {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function lagStats(lagsMs: ArrayLike<number>): { p50: number; p99: number; max: number; n: number } {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < lagsMs.length; i++) if (lagsMs[i]! > max) max = lagsMs[i]!;
  return {
    p50: percentile(lagsMs, 50),
    p99: percentile(lagsMs, 99),
    max: lagsMs.length === 0 ? Number.NaN : max,
    n: lagsMs.length,
  };
}

/** Waits for `check` to return a value other than undefined/false (infra's one waitFor, what first). */
export function until<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  opts: { timeoutMs: number; intervalMs?: number; abort?: () => string | undefined },
): Promise<T> {
  return waitFor(check, { what, ...opts });
}

export function errorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!.slice(0, 300);
}

/**
 * Fails a wait when a progress figure stops moving: `probe` is read every few seconds, and
 * reason() says why once it has not changed for limitMs.
 */
export class StallWatch {
  private last: number | undefined;
  private changedAt = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly what: string,
    private readonly probe: () => Promise<number>,
    private readonly limitMs: number,
  ) {
    this.timer = setInterval(() => {
      void this.probe()
        .then((v) => {
          if (v !== this.last) {
            this.last = v;
            this.changedAt = Date.now();
          }
        })
        .catch(() => {});
    }, 2000);
  }

  reason(): string | undefined {
    const idle = Date.now() - this.changedAt;
    return idle > this.limitMs
      ? `no progress for ${Math.round(idle / 1000)} s (${this.what} stuck at ${this.last ?? 'nothing'})`
      : undefined;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Runs a clean-up step, giving up (with a message) after ms so that a stuck step cannot hang the run. */
export async function bounded(what: string, step: () => Promise<unknown>, ms = 60_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), ms);
  });
  try {
    const r = await Promise.race([
      step().catch((err: unknown) => say(`${what} failed: ${errorText(err)}`)),
      timeout,
    ]);
    if (r === 'timeout') say(`${what}: gave up after ${Math.round(ms / 1000)} s`);
  } finally {
    clearTimeout(timer);
  }
}
