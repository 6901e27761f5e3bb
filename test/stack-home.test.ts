/**
 * Run as root, the stack's PostgreSQL runs as the `postgres` OS user, which must be able to enter
 * the stack folder. A BRABANT_HOME made by `mktemp -d` (mode 0700, owner root) is fixed; a folder
 * above it that the user cannot enter is refused with the exact command, before anything starts.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startStack } from '../infra/stack.ts';
import { STATE_FILE } from '../infra/stack-state.ts';
import { brabant, cliEnv, freeBasePort, processesOf } from './support/cli.ts';
import { region, stack } from './support/stack.ts';

describe.runIf(process.getuid?.() === 0)('a stack folder PostgreSQL cannot enter', () => {
  it('is fixed when it is BRABANT_HOME itself (as `mktemp -d` makes it), saying so', async () => {
    const home = mkdtempSync(join(tmpdir(), 'brabant-mktemp-'));
    expect(statSync(home).mode & 0o777).toBe(0o700);
    const said: string[] = [];
    const s = await startStack(
      { regions: [{ name: 'vlaanderen', nodes: 1 }], kafka: 'shared' },
      {
        workDir: home,
        basePort: 0,
        onProgress: (m) => said.push(m),
        env: {
          BRABANT_KAFKA_BROKERS: region('vlaanderen').kafkaBrokers.join(','),
          BRABANT_REGISTRY_URL: stack().registryUrl,
        },
      },
    );
    try {
      expect(said).toContain(
        `${home} had mode 0700: gave other users search permission (chmod o+x), so that PostgreSQL (OS user postgres) can reach its data in it`,
      );
      expect(statSync(home).mode & 0o777).toBe(0o701);
      const c = new pg.Client({ connectionString: s.regions[0]!.nodes[0]!.url });
      await c.connect();
      await c.end();
    } finally {
      await s.stop();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('is refused with the command to run when a folder above BRABANT_HOME blocks it, starting nothing', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'brabant-closed-'));
    const home = join(parent, 'home');
    mkdirSync(home);
    try {
      const { code, out } = await brabant(['up'], cliEnv(home, await freeBasePort()));
      expect(code).toBe(1);
      expect(out).toContain(
        `HOME_UNREACHABLE: PostgreSQL runs as the OS user postgres, which cannot enter ${parent} (mode 0700, owner root)`,
      );
      expect(out).toContain(`run \`chmod o+x ${parent}\``);
      expect(existsSync(join(home, STATE_FILE))).toBe(false);
      expect(processesOf(home)).toEqual([]);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});
