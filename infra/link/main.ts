/**
 * The link process of the local stack (one per stack): the relays between its regions and a
 * control API on a loopback port — GET /status, POST /cut?mode=reset|blackhole, POST /heal,
 * POST /delay?ms=N. Started and stopped like every other part (stack.ts); its spec is a JSON file.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { type CutMode, Link, type RelaySpec } from './relay.ts';

export interface LinkSpec {
  controlPort: number;
  relays: RelaySpec[];
  logFile: string;
  /** Where the spec is written for the process to read. */
  specFile: string;
}

const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as LinkSpec;
const link = new Link(spec.relays);
const log = (msg: string, fields: Record<string, unknown> = {}) =>
  console.log(JSON.stringify({ time: new Date().toISOString(), msg, ...fields }));

await link.start();
const api = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://link');
  const answer = (code: number, body: unknown) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && url.pathname === '/status') return answer(200, link.status());
  if (req.method === 'POST' && url.pathname === '/cut') {
    const mode = (url.searchParams.get('mode') ?? 'reset') as CutMode;
    if (mode !== 'reset' && mode !== 'blackhole') return answer(400, { error: 'mode is reset or blackhole' });
    link.setCut(mode);
    log('link cut', { mode });
    return answer(200, link.status());
  }
  if (req.method === 'POST' && url.pathname === '/heal') {
    link.heal();
    log('link healed');
    return answer(200, link.status());
  }
  if (req.method === 'POST' && url.pathname === '/delay') {
    const ms = Number(url.searchParams.get('ms'));
    if (!Number.isInteger(ms) || ms < 0 || ms > 60_000) return answer(400, { error: 'ms is 0..60000' });
    link.delayMs = ms;
    log('link delay set', { delayMs: ms });
    return answer(200, link.status());
  }
  answer(404, { error: 'GET /status, POST /cut?mode=reset|blackhole, POST /heal, POST /delay?ms=N' });
});
api.listen(spec.controlPort, '127.0.0.1', () =>
  log('link relays listening', { control: spec.controlPort, relays: link.status().relays }),
);
for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.once(sig, () => {
    api.close();
    void link.stop().then(() => process.exit(0));
  });
