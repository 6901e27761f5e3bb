/**
 * The harness's own behaviour: bad input gets one clear message and never a hang, and per-region
 * Kafka clusters are really independent. External components come from the shared stack.
 */
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startStack } from '../infra/stack.ts';
import { isBrabantError } from '../services/runtime/errors.ts';
import { brabant, cliEnv } from './support/cli.ts';
import { kafka, region, stack, uniqueName } from './support/stack.ts';

describe('harness', () => {
  it('refuses a taken port with one message naming it and the fix, starting nothing', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const workDir = mkdtempSync(join(tmpdir(), 'brabant-port-'));
    try {
      const err = await startStack(
        { regions: [{ name: 'vlaanderen', nodes: 1 }], kafka: 'shared' },
        { workDir, basePort: port },
      ).catch((e: unknown) => e);
      expect(isBrabantError(err, 'PORT_IN_USE')).toBe(true);
      expect((err as Error).message).toContain(`port 127.0.0.1:${port} is wanted by kafka (broker)`);
      expect((err as Error).message).toContain('--base-port');
      expect(existsSync(join(workDir, 'stack.json'))).toBe(false);
    } finally {
      blocker.close();
    }
  });

  it('`brabant up` refuses a data folder left from an earlier run and says how to go on', async () => {
    const home = mkdtempSync(join(tmpdir(), 'brabant-home-'));
    mkdirSync(join(home, 'data'));
    const { code, out } = await brabant(['up'], cliEnv(home, 29090));
    expect(code).toBe(1);
    expect(out).toContain('DATA_DIR_LEFT_OVER');
    expect(out).toContain('brabant down --purge');
    expect(out).toContain('--reuse');
  });

  it('`brabant down` with no stack says so instead of hanging', async () => {
    const home = mkdtempSync(join(tmpdir(), 'brabant-home-'));
    const { code, out } = await brabant(['down'], cliEnv(home, 29090));
    expect(code).toBe(1);
    expect(out).toContain('STACK_NOT_RUNNING');
  });

  it('starts one independent Kafka cluster per region, using external PostgreSQL and registry', async () => {
    const shared = stack();
    const [vl, wa] = [region('vlaanderen').nodes[0]!, region('wallonie').nodes[0]!];
    const workDir = mkdtempSync(join(tmpdir(), 'brabant-per-region-'));
    const s = await startStack(
      {
        regions: [
          { name: 'north', nodes: 1 },
          { name: 'south', nodes: 1 },
        ],
        kafka: 'per-region',
      },
      {
        workDir,
        basePort: 0,
        env: { BRABANT_REGISTRY_URL: shared.registryUrl, BRABANT_PG_URLS: `no-1=${vl.url},so-1=${wa.url}` },
      },
    );
    try {
      const [north, south] = s.regions;
      expect(north!.kafkaBrokers).not.toEqual(south!.kafkaBrokers);
      expect(north!.nodes[0]).toMatchObject({ id: 'no-1', external: true, url: vl.url });
      // the per-region layout brings the link between the regions (infra/link)
      expect(s.pids.map((p) => p.name).sort()).toEqual(['kafka-north', 'kafka-south', 'link']);
      const topic = uniqueName('only_north');
      const adminNorth = kafka(north!.kafkaBrokers).admin();
      const adminSouth = kafka(south!.kafkaBrokers).admin();
      await adminNorth.connect();
      await adminSouth.connect();
      await adminNorth.createTopics({ topics: [{ topic }], waitForLeaders: true });
      expect(await adminNorth.listTopics()).toContain(topic);
      expect(await adminSouth.listTopics()).not.toContain(topic);
      await adminNorth.disconnect();
      await adminSouth.disconnect();
    } finally {
      await s.stop();
    }
    expect(existsSync(join(workDir, 'stack.json'))).toBe(false);
  });
});
