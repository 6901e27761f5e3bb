/**
 * Rolling upgrade across two builds: Vlaanderen runs the capture and apply of an older build of
 * Brabant (a commit of this repository, extracted with `git archive`), Wallonie the current one,
 * both regions writing, conflicts included. The older apply reads what the newer capture wrote and
 * the newer apply what the older capture wrote; then Vlaanderen is upgraded in place (SIGTERM,
 * start the new build) while both keep writing, and everything converges.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { type Pair, replicationPair, type Side, waitConverged } from './support/pair.ts';

/**
 * The older build: the last commit of session 1 (before the grouped fast path of apply, the
 * offset-commit interval, the kafkajs patch and the router's watch connections).
 * BRABANT_UPGRADE_FROM picks another commit.
 */
const OLD_BUILD = process.env.BRABANT_UPGRADE_FROM ?? '3f3b4bc';

function checkoutOf(commit: string): string {
  const dir = resolve('.cache', `build-${commit}`);
  if (existsSync(join(dir, 'services'))) return dir;
  try {
    execFileSync('git', ['cat-file', '-e', `${commit}^{commit}`], { stdio: 'ignore' });
  } catch {
    throw new Error(
      `the upgrade test runs the older build ${commit} of this repository, which this clone lacks (shallow clone?): run 'git fetch --unshallow' or set BRABANT_UPGRADE_FROM to a commit it has`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('sh', ['-c', `git archive ${commit} | tar -x -C '${dir}'`]);
  // same dependencies (package-lock.json unchanged since): share this checkout's node_modules
  symlinkSync(resolve('node_modules'), join(dir, 'node_modules'));
  return dir;
}

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

/** Writers on one side: inserts of its own keys and updates of 20 shared keys (conflicts). */
function writers(side: Side, region: string, base: number) {
  let running = true;
  let n = 0;
  const c = new pg.Client({ connectionString: side.url });
  const done = (async () => {
    await c.connect();
    while (running) {
      n++;
      if (n % 3 === 0) {
        await c.query(
          `insert into kv values ($1, $2, $3) on conflict (k) do update set v = excluded.v, region = excluded.region`,
          [1 + (n % 20), `${region}-${n}`, region],
        );
      } else {
        await c.query('insert into kv values ($1, $2, $3)', [base + n, `${region}-${n}`, region]);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await c.end();
  })();
  return {
    get count() {
      return n;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

describe('rolling upgrade', () => {
  it(`replaces one node's capture and apply of build ${OLD_BUILD} by this build while both regions write, and converges`, async () => {
    const old = checkoutOf(OLD_BUILD);
    pair = await replicationPair('create table kv (k int primary key, v text, region text)');
    const { vl, wa } = pair;
    let vlCapture = pair.capture(vl, {}, old);
    let vlApply = pair.apply(vl, {}, old);
    const started = [
      vlCapture.waitForLog(/capture session starting/),
      vlApply.waitForLog(/apply session running/),
      pair.capture(wa).waitForLog(/capture session starting/),
      pair.apply(wa).waitForLog(/apply session running/),
    ];
    await Promise.all(started);
    const w = [writers(vl, 'vlaanderen', 1_000_000), writers(wa, 'wallonie', 2_000_000)];

    // both directions work across the builds: old → new and new → old
    const crossed = async (side: Side, from: string) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const r = await side.client.query(
          'select count(*)::int as n from kv where region = $1 and k > 1000',
          [from],
        );
        if (r.rows[0].n > 0) return r.rows[0].n as number;
        if (Date.now() > deadline) throw new Error(`no ${from} rows reached ${side.names.nodeId}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    const newReadOld = await crossed(wa, 'vlaanderen');
    const oldReadNew = await crossed(vl, 'wallonie');

    // upgrade Vlaanderen in place: SIGTERM (capture finishes its batch, apply its transaction)
    await new Promise((r) => setTimeout(r, 1000));
    expect(await vlCapture.kill('SIGTERM')).toBe(0);
    vlCapture = pair.capture(vl);
    await vlCapture.waitForLog(/capture session starting/);
    expect(await vlApply.kill('SIGTERM')).toBe(0);
    vlApply = pair.apply(vl);
    await vlApply.waitForLog(/apply session running/);
    await new Promise((r) => setTimeout(r, 2000));
    for (const x of w) await x.stop();

    const rows = await waitConverged(pair.sides, 'kv', undefined, 90_000);
    const own = (region: string) => rows.filter((r) => r.includes(`"region":"${region}"`));
    console.log(
      `upgrade from ${OLD_BUILD}: ${w[0]!.count} + ${w[1]!.count} writes, ${rows.length} rows converged; before the upgrade the new apply had read ${newReadOld} rows of the old capture and the old apply ${oldReadNew} of the new one`,
    );
    // every insert of a new key arrived on both sides (the shared keys add at most 20 rows)
    const inserted = w.reduce((a, x) => a + (x.count - Math.floor(x.count / 3)), 0);
    expect(rows.length).toBeGreaterThanOrEqual(inserted);
    expect(rows.length).toBeLessThanOrEqual(inserted + 20);
    expect(own('vlaanderen').length).toBeGreaterThan(0);
    expect(own('wallonie').length).toBeGreaterThan(0);
  }, 240_000);
});
