/**
 * The choice of a region's write leader (pure, clock passed in). Stable by construction: the
 * current leader stays while it is healthy and not in maintenance; otherwise the first usable
 * node in the configured order, the region's own nodes before other regions' (which are writable
 * too: active-active). A recovered node does not take leadership back by itself (no flapping);
 * moving back is a switchover. Two routers with the same configuration choose the same node.
 */

export interface RouterNode {
  id: string;
  region: string;
}

export interface NodeHealth {
  healthy: boolean;
  /** When the node started failing checks (undefined while healthy). */
  failingSince?: number;
}

export interface LeaderInput {
  region: string;
  /** Priority order. */
  nodes: RouterNode[];
  current: string | undefined;
  health: Map<string, NodeHealth>;
  maintenance: Set<string>;
  now: number;
  /** A node failing checks this long is dead. */
  deadAfterMs: number;
}

export interface LeaderDecision {
  leader: string | undefined;
  changed: boolean;
  reason: string;
}

export function isDead(h: NodeHealth | undefined, now: number, deadAfterMs: number): boolean {
  if (h === undefined) return true;
  if (h.healthy) return false;
  return h.failingSince !== undefined && now - h.failingSince >= deadAfterMs;
}

export function chooseLeader(input: LeaderInput): LeaderDecision {
  const { current, health, maintenance, now, deadAfterMs } = input;
  if (current !== undefined && !maintenance.has(current) && !isDead(health.get(current), now, deadAfterMs)) {
    return { leader: current, changed: false, reason: `${current} is healthy` };
  }
  const usable = (n: RouterNode) =>
    n.id !== current && !maintenance.has(n.id) && health.get(n.id)?.healthy === true;
  const ordered = [
    ...input.nodes.filter((n) => n.region === input.region),
    ...input.nodes.filter((n) => n.region !== input.region),
  ];
  const next = ordered.find(usable);
  const why =
    current === undefined
      ? 'no leader yet'
      : maintenance.has(current)
        ? `${current} is in maintenance`
        : `${current} failed health checks for ${deadAfterMs} ms or more`;
  if (next === undefined) {
    return {
      leader: current,
      changed: false,
      reason: `${why}, but no other node is healthy; keeping ${current ?? 'none'}`,
    };
  }
  const where =
    next.region === input.region
      ? 'first healthy node of the region'
      : `first healthy node of another region (${next.region}), none left in ${input.region}`;
  return { leader: next.id, changed: next.id !== current, reason: `${why}; ${next.id} is the ${where}` };
}
