/**
 * Lag probes both ways (W4, W10): one client per node writing a row 20 times a second in an id
 * range of its own, and a poller on the other node noting when each becomes visible there.
 */
import { type Db, RowWriters, VisibilityPoller } from './pg.ts';

/** First probe id written on A (B's probes follow from PROBE_B; both above any workload's ids). */
export const PROBE_A = 1_000_000_000;
export const PROBE_B = 2_000_000_000;

export interface Probes {
  probeA: RowWriters;
  probeB: RowWriters;
  /** Polls B for A's probe rows. */
  pollB: VisibilityPoller;
  /** Polls A for B's probe rows. */
  pollA: VisibilityPoller;
}

export function probesBothWays(
  p: { a: Db; b: Db },
  regions: { regionA: string; regionB: string },
  pollMs: number,
): Probes {
  const probeA = new RowWriters(p.a.url, {
    clients: 1,
    firstId: PROBE_A,
    region: regions.regionA,
    ratePerSec: 20,
  });
  const probeB = new RowWriters(p.b.url, {
    clients: 1,
    firstId: PROBE_B,
    region: regions.regionB,
    ratePerSec: 20,
  });
  const pollB = new VisibilityPoller(p.b.url, probeA.commits, {
    firstId: PROBE_A,
    endId: PROBE_B - 1,
    intervalMs: pollMs,
  });
  const pollA = new VisibilityPoller(p.a.url, probeB.commits, {
    firstId: PROBE_B,
    endId: PROBE_B * 2,
    intervalMs: pollMs,
  });
  return { probeA, probeB, pollA, pollB };
}
