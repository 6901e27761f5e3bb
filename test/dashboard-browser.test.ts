/**
 * `brabant dashboard` in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * the page loads without console errors, draws its plots (uPlot canvases), shows the figures
 * `brabant status --json` reports (the same nodes and verdict; each plot's newest point is the
 * report's own lag and retained WAL), shows a node that went away as GONE, not blank, and a
 * screenshot of each state is written under .cache/test-output/dashboard-browser/.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../infra/processes.ts';
import type { StatusReport } from '../services/control/status-model.ts';
import type { DashboardSeries } from '../services/dashboard/history.ts';
import { spawnBrabant, waitUntil } from './support/cli.ts';
import { createItems, type Deployment, deploy, startServices } from './support/operator.ts';

const CHROMIUM = process.env.BRABANT_CHROMIUM ?? '/usr/bin/chromium';
const OUT = resolve('.cache/test-output/dashboard-browser');

let d: Deployment;
let browser: Browser | undefined;
let server: ReturnType<typeof spawnBrabant> | undefined;
beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `no Chromium at ${CHROMIUM}: run infra/setup.sh (apt package chromium) or set BRABANT_CHROMIUM`,
    );
  mkdirSync(OUT, { recursive: true });
  d = await deploy('dashboard', { relayFirst: true });
  await startServices(d);
}, 300_000);
afterAll(async () => {
  await browser?.close();
  server?.child.kill('SIGTERM');
  await d?.stop();
});

interface PageState {
  status: StatusReport | null;
  series: DashboardSeries | null;
  rounds: number;
}
const pageState = (page: Page): Promise<PageState> =>
  page.evaluate(() => (globalThis as unknown as { brabantDashboard: PageState }).brabantDashboard);
const last = <T>(xs: T[]) => xs[xs.length - 1];

describe('brabant dashboard in Chromium', { timeout: 240_000 }, () => {
  it('plots what status reports, without console errors, and shows a node that went away', async () => {
    const [vl, wa] = d.ids;
    await createItems(d);
    await d.sql(vl, "insert into items select g, 'vl' from generate_series(1, 200) g");
    await d.sql(wa, "insert into items select g, 'wa' from generate_series(201, 300) g");

    const port = await freePort();
    server = spawnBrabant(['dashboard', '--port', String(port)], d.env);
    await waitUntil('the dashboard listening', () => server!.output().includes('dashboard at '), 60_000);
    const url = `http://127.0.0.1:${port}/`;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await waitUntil('the page drew a few rounds', async () => (await pageState(page)).rounds >= 4, 60_000);
    expect(await page.locator('.uplot canvas').count()).toBe(4);
    await waitUntil(
      'healthy on the page',
      async () => (await page.locator('#verdict').textContent()) === 'healthy',
      60_000,
    );

    // the page and `brabant status --json` see the same deployment
    const cli = JSON.parse((await d.cli(['status', '--json'])).out) as StatusReport;
    const s = await pageState(page);
    const ids = (r: StatusReport) => r.regions.map((g) => g.nodes.map((n) => n.id));
    expect(ids(s.status!)).toEqual(ids(cli));
    expect(s.status!.verdict.state).toBe(cli.verdict.state);
    // each plot's newest point is its report's figure (lag of every origin, retained WAL of every slot)
    const newest = await waitUntilConsistent(page);
    for (const n of newest.status!.regions.flatMap((g) => g.nodes)) {
      const cliNode = cli.regions.flatMap((g) => g.nodes).find((x) => x.id === n.id)!;
      for (const o of n.apply.origins) {
        const i = newest.series!.lagSeconds.labels.indexOf(`${n.id} ← ${o.source}`);
        expect(i).toBeGreaterThanOrEqual(0);
        expect(last(newest.series!.lagSeconds.data[i + 1]!)).toBe(o.lagSeconds);
        const fromCli = cliNode.apply.origins.find((x) => x.source === o.source)!.lagSeconds!;
        expect(Math.abs(o.lagSeconds! - fromCli)).toBeLessThan(5);
      }
      const w = newest.series!.retainedWalBytes.labels.indexOf(n.id);
      expect(last(newest.series!.retainedWalBytes.data[w + 1]!)).toBe(n.capture.slot?.retainedWalBytes);
    }
    const rows = newest.series!.rowsPerSecond;
    expect(rows.labels.sort()).toEqual([vl, wa].sort());
    expect(await page.locator('.u-legend').first().textContent()).toContain(`${wa} ← ${vl}`);
    await page.screenshot({ path: join(OUT, 'dashboard-healthy.png'), fullPage: true });

    // the first node goes away: the page shows it as gone, the rest as before
    d.link!.setCut('reset');
    try {
      await waitUntil(
        'the node shown as gone',
        async () => ((await page.locator(`tr[data-node="${vl}"]`).textContent()) ?? '').includes('GONE'),
        60_000,
      );
      expect(await page.locator('#verdict').textContent()).toContain(`down: node ${vl} unreachable`);
      expect(await page.locator(`tr[data-node="${wa}"]`).textContent()).toContain('streaming');
      await page.screenshot({ path: join(OUT, 'dashboard-node-gone.png'), fullPage: true });
    } finally {
      d.link!.heal();
    }
    expect(errors).toEqual([]);
    for (const f of ['dashboard-healthy.png', 'dashboard-node-gone.png'])
      expect(statSync(join(OUT, f)).size).toBeGreaterThan(10_000);
    console.log(`screenshots: ${OUT}`);
  });
});

/** The page's status and series of one and the same round (they are fetched together). */
async function waitUntilConsistent(page: Page): Promise<PageState> {
  let s: PageState | undefined;
  await waitUntil('status and series of the same round', async () => {
    s = await pageState(page);
    return (
      s.status !== null &&
      s.series !== null &&
      last(s.series.lagSeconds.data[0]!) === Date.parse(s.status.at) / 1000
    );
  });
  return s!;
}
