/**
 * `brabant demo` as the README's quick start runs it, on the secured stack (its default): it
 * must pass its own checks — both regions identical, no failed write, the switchover there and
 * back, the DDL in both regions, the delta counter exact — with its writers and DDL as its own
 * role through the routers, and print no secret of its stack (nor write one into a log).
 */
import { chmodSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { brabant, cliEnv, freeBasePort, newHome } from './support/cli.ts';

const home = newHome('demo');
// the demo's stack is a folder below it (demo/), which PostgreSQL's OS user must pass through
chmodSync(home, 0o711);
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
});

/** Every password and key line of the demo's secrets folder. */
function secretsOf(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => !/\.(pem|ext|csr|srl|p12)$/.test(f))
    .flatMap((f) => {
      const text = readFileSync(join(dir, f), 'utf8');
      if (f.endsWith('.key')) return text.split('\n').filter((l) => l.length >= 32 && !l.startsWith('-----'));
      return [text.trim()];
    });
}

describe('brabant demo (secured by default)', { timeout: 420_000 }, () => {
  it('passes its checks with TLS and authentication on every link, and prints no secret', async () => {
    // the demo's stack takes the ports from base + 100
    const base = (await freeBasePort(40)) - 100;
    const { code, out } = await brabant(['demo', '--seconds', '10'], cliEnv(home, base), 400_000);
    expect(out, out).toMatch(/security: TLS and authentication on every link/);
    expect(out).toMatch(/node init --ddl-roles brabant_demo/);
    expect(out).toMatch(/Both regions hold identical data: \d+ rows/);
    expect(out).toMatch(/writes through the routers: \d+ in vlaanderen, \d+ in wallonie; failed: 0/);
    expect(out).toMatch(/switchover of vlaanderen: vl-1 → wa-1, writes waited \d+ ms; back wa-1 → vl-1/);
    expect(out).toMatch(/DDL: column note added in wallonie while both wrote, in vlaanderen \d+ ms later/);
    const counter = /counter \(delta policy\): sum (\d+) = (\d+) increments made/.exec(out);
    expect(counter?.[1]).toBe(counter?.[2]);
    expect(code).toBe(0);

    const dir = join(home, 'demo');
    const secrets = secretsOf(join(dir, 'secrets'));
    expect(secrets.length).toBeGreaterThan(10);
    const logs = readdirSync(join(dir, 'logs')).map((f) => join(dir, 'logs', f));
    for (const [name, text] of [
      ['output', out] as const,
      ...logs.map((f) => [f, readFileSync(f, 'utf8')] as const),
    ])
      for (const s of secrets) expect(text.includes(s), `${name} holds a secret`).toBe(false);
  });
});
