/**
 * `brabant status` against a running deployment (test/support/operator.ts): healthy with every
 * part shown (JSON: one object per node under regions[].nodes[]); a node down — its database
 * refusing connections — said by name while the rest is still shown, and the other node's lag
 * from it growing while its stream is stalled (no heartbeat arrives); a stream paused on a DDL
 * that fails on the peer, degraded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../services/control/status-model.ts';
import { waitUntil } from './support/cli.ts';
import { type Deployment, deploy, startServices } from './support/operator.ts';

let d: Deployment;
beforeAll(async () => {
  d = await deploy('status', { relayFirst: true });
  await startServices(d);
}, 300_000);
afterAll(async () => {
  await d?.stop();
});

async function report(): Promise<{ code: number; r: StatusReport; out: string }> {
  const res = await d.cli(['status', '--json']);
  try {
    return { code: res.code, r: JSON.parse(res.out) as StatusReport, out: res.out };
  } catch {
    throw new Error(`status --json did not print JSON (exit ${res.code}):\n${res.out}`);
  }
}

const nodeOf = (r: StatusReport, id: string) => r.regions.flatMap((g) => g.nodes).find((n) => n.id === id)!;

describe('brabant status', { timeout: 240_000 }, () => {
  it('is healthy and shows every part when everything runs', async () => {
    const [vl, wa] = d.ids;
    await d.sql(vl, 'create table t (id int primary key, v text)');
    await waitUntil(
      'table t replicated to the peer',
      async () => (await d.sql(wa, "select to_regclass('t') as r"))[0]!.r !== null,
    );
    await d.sql(vl, "insert into t values (1, 'a')");
    await waitUntil('row 1 on the peer', async () => (await d.sql(wa, 'select * from t')).length === 1);
    let last: Awaited<ReturnType<typeof report>> | undefined;
    await waitUntil('status healthy', async () => {
      last = await report();
      return last.code === 0;
    }).catch(() => {
      throw new Error(`status never healthy:\n${last?.out}`);
    });
    const r = last!.r;
    expect(r.verdict).toEqual({ state: 'healthy', reasons: [] });
    expect(r.regions.map((g) => g.nodes.map((n) => n.id))).toEqual([[vl], [wa]]);
    for (const g of r.regions) {
      expect(g.kafka.reachable).toBe(true);
      expect(g.registry.reachable).toBe(true);
      expect(g.router?.leader).toBe(g.nodes[0]!.id);
    }
    const w = nodeOf(r, wa);
    expect(w.capture.ready).toBe(true);
    expect(w.capture.slot?.active).toBe(true);
    expect(w.apply.ready).toBe(true);
    const fromVl = w.apply.origins.find((o) => o.source === vl)!;
    expect(fromVl.appliedLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(fromVl.lagSeconds).toBeLessThan(10);
    const text = await d.cli(['status']);
    expect(text.code).toBe(0);
    expect(text.out.split('\n')[0]).toBe('healthy');
    expect(text.out).toContain(`node ${wa}: reachable`);
    expect(text.out).toContain(`from ${vl}: lag`);
  });

  it('says which node is down, still shows the rest, and the peer’s lag from it grows', async () => {
    const [vl, wa] = d.ids;
    // the node goes away: every connection to it is reset, new ones refused (capture and apply's included)
    d.link!.setCut('reset');
    try {
      let down: Awaited<ReturnType<typeof report>> | undefined;
      await waitUntil('status down', async () => {
        down = await report();
        return down.code === 2 && down.r.verdict.reasons.some((x) => x.startsWith(`node ${vl} unreachable`));
      });
      const r = down!.r;
      expect(r.verdict.state).toBe('down');
      expect(r.verdict.reasons[0]).toContain(`node ${vl} unreachable`);
      expect(nodeOf(r, vl).database.reachable).toBe(false);
      // the rest is still there
      const w = nodeOf(r, wa);
      expect(w.database.reachable).toBe(true);
      expect(w.capture.ready).toBe(true);
      const lag1 = w.apply.origins.find((o) => o.source === vl)!.lagSeconds!;
      await new Promise((res) => setTimeout(res, 3000));
      const lag2 = nodeOf((await report()).r, wa).apply.origins.find((o) => o.source === vl)!.lagSeconds!;
      // nothing arrives from the stalled stream: its lag grows with the clock
      expect(lag2).toBeGreaterThan(lag1 + 2);
      const text = await d.cli(['status']);
      expect(text.code).toBe(2);
      expect(text.out.split('\n')[0]).toMatch(new RegExp(`^down: node ${vl} unreachable`));
      expect(text.out).toContain(`node ${wa}: reachable`);
    } finally {
      d.link!.heal();
    }
    let again: Awaited<ReturnType<typeof report>> | undefined;
    await waitUntil(
      'healthy again',
      async () => {
        again = await report();
        return again.code === 0;
      },
      90_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}: ${again?.r.verdict.reasons.join('; ')}`);
    });
  });

  it('is degraded while a stream is paused on a DDL that fails on the peer', async () => {
    const [vl, wa] = d.ids;
    // the peer has a table of that name already (made there alone): the replicated CREATE fails there
    await d.sql(wa, 'set brabant.ddl_replication = off; create table clash (id int primary key)');
    await d.sql(vl, 'create table clash (id int primary key)');
    let seen: Awaited<ReturnType<typeof report>> | undefined;
    await waitUntil('status degraded by the paused stream', async () => {
      seen = await report();
      return seen.code === 1 && nodeOf(seen.r, wa).apply.pausedStreams.length > 0;
    });
    const w = nodeOf(seen!.r, wa);
    expect(seen!.r.verdict.state).toBe('degraded');
    expect(w.apply.pausedStreams[0]!.reason).toBe('DDL_FAILED');
    expect(w.pendingDdl[0]).toMatchObject({
      source: vl,
      statement: expect.stringContaining('create table clash'),
    });
    expect(seen!.r.verdict.reasons.join('\n')).toContain(`DDL of ${vl}`);
    const text = await d.cli(['status']);
    expect(text.code).toBe(1);
    expect(text.out.split('\n')[0]).toMatch(/^degraded: /);
    expect(text.out).toContain('PAUSED');
  });
});
