/**
 * The local stack's ports (pure planning and a check, apart from starting anything): the next
 * port of a plan (consecutive from a base port, or free ones chosen by the system below the
 * ephemeral range), and a check that no planned part's port is taken.
 */

import { assertPortFree, freePort } from './processes.ts';
import type { PortPlan } from './stack-config.ts';
import type { ComponentSpec } from './stack-state.ts';

/** A part to start, in the order of the state file (stop goes the other way). */
export type Planned = ComponentSpec & { id: string; name: string };

export function portPlan(basePort: number): PortPlan {
  let offset = 0;
  return {
    async next() {
      if (basePort === 0) return freePort();
      return basePort + offset++;
    },
  };
}

/** Fails, naming the part, when a planned part's port is already taken. */
export async function assertPortsFree(planned: Planned[]): Promise<void> {
  for (const p of planned) {
    if (p.kind === 'kafka') {
      await assertPortFree('127.0.0.1', p.spec.brokerPort, `${p.name} (broker)`);
      await assertPortFree('127.0.0.1', p.spec.controllerPort, `${p.name} (controller)`);
    } else if (p.kind === 'registry') await assertPortFree('127.0.0.1', p.spec.port, 'the schema registry');
    else if (p.kind === 'link')
      for (const port of [p.spec.controlPort, ...p.spec.relays.map((r) => r.listenPort)])
        await assertPortFree('127.0.0.1', port, 'the link between regions');
    else if (p.kind !== 'mirror')
      await assertPortFree(
        '127.0.0.1',
        p.spec.port,
        `PostgreSQL ${p.kind === 'postgres' ? `node ${p.id}` : p.id}`,
      );
  }
}
