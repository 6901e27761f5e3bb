/**
 * `brabant dashboard`: a live page served by Node on loopback (I/O shell). A sampler collects the
 * topology's status every few seconds (the same collector as `brabant status`, dead letters read
 * every few rounds since that costs a consumer join), keeps the last minutes (history.ts), and
 * the page (page/) polls:
 *
 *   GET /api/status      the newest report, exactly as `brabant status --json` prints it
 *   GET /api/series      the plots' series over the last minutes (history.ts)
 *   GET /api/conflicts   the newest conflicts with both versions (brabant conflicts)
 *   GET /api/deadletters the dead letters and what was done with each (brabant deadletters)
 *
 * The page draws with uPlot (the npm package `uplot`, served from node_modules).
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readConflicts } from '../control/conflicts-commands.ts';
import type { DeadLetter } from '../control/deadletter-model.ts';
import { listDeadLetters, stateOf } from '../control/deadletters-commands.ts';
import { collectStatus } from '../control/status-collect.ts';
import { describeError } from '../runtime/errors.ts';
import type { Topology } from '../runtime/topology.ts';
import { History } from './history.ts';

const PAGE = join(dirname(fileURLToPath(import.meta.url)), 'page');
const UPLOT = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'));

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: join(PAGE, 'index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: join(PAGE, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: join(PAGE, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  '/uplot.js': { file: join(UPLOT, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/uplot.css': { file: join(UPLOT, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

export interface Dashboard {
  url: string;
  stop(): Promise<void>;
}

export async function serveDashboard(o: {
  topology: Topology;
  port: number;
  host?: string;
  intervalMs?: number;
  /** Read the dead-letter topics every this many rounds. */
  deadLettersEvery?: number;
  onError?: (message: string) => void;
}): Promise<Dashboard> {
  const history = new History(600);
  const every = o.deadLettersEvery ?? 5;
  let round = 0;
  let letters: (DeadLetter & { state: string })[] = [];
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const sample = async () => {
    const withLetters = round % every === 0;
    round++;
    const [report] = await Promise.all([
      collectStatus(o.topology, { deadLetters: withLetters }),
      withLetters
        ? listDeadLetters(o.topology)
            .then((l) => {
              letters = l.letters.map((d) => ({ ...d, state: stateOf(d, l.actions) }));
            })
            .catch((err) => o.onError?.(`dead letters: ${describeError(err)}`))
        : Promise.resolve(),
    ]);
    // between two reads of the topics, the last count stands
    const previous = history.latest;
    if (!withLetters && previous !== undefined)
      for (const r of report.regions) {
        const was = previous.regions.find((x) => x.name === r.name)?.deadLetters;
        if (was !== undefined && r.deadLetters === undefined) r.deadLetters = was;
      }
    history.add(report);
  };
  const loop = async () => {
    await sample().catch((err) => o.onError?.(describeError(err)));
    if (!stopped) timer = setTimeout(() => void loop(), o.intervalMs ?? 2000);
  };
  await loop();

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://dashboard').pathname;
    const json = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const run = async () => {
      const asset = ASSETS[path];
      if (asset !== undefined) {
        res.writeHead(200, { 'content-type': asset.type });
        return res.end(readFileSync(asset.file));
      }
      if (path === '/api/status') return json(history.latest);
      if (path === '/api/series') return json(history.series());
      if (path === '/api/conflicts') return json(await readConflicts(o.topology, { limit: 20 }));
      if (path === '/api/deadletters') return json({ deadLetters: letters });
      if (path === '/favicon.ico') {
        res.writeHead(204);
        return res.end();
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`no ${path}\n`);
    };
    run().catch((err: unknown) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: describeError(err) }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : o.port;
  return {
    url: `http://${o.host ?? '127.0.0.1'}:${port}/`,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
