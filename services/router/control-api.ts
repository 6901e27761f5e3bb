/** The router's HTTP control API: status, switchover, maintenance, metrics. */
import { createServer, type Server } from 'node:http';
import { BrabantError, describeError, isBrabantError } from '../runtime/errors.ts';
import type { Router } from './router.ts';

export async function serveControl(router: Router, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://router');
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body, null, 2)}\n`);
    };
    const run = async () => {
      if (req.method === 'GET' && url.pathname === '/status') return reply(200, router.status());
      if (req.method === 'GET' && url.pathname === '/healthz')
        return reply(200, { ok: true, leader: router.currentLeader });
      if (req.method === 'GET' && url.pathname === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        return res.end(router.metrics.render());
      }
      if (req.method === 'POST' && url.pathname === '/switchover') {
        const to = url.searchParams.get('to');
        if (!to) throw new BrabantError('CONFIG_INVALID', 'POST /switchover needs ?to=<node id>');
        return reply(200, await router.switchover(to));
      }
      if (req.method === 'POST' && url.pathname === '/maintenance') {
        const node = url.searchParams.get('node');
        const action = url.searchParams.get('action');
        if (!node || (action !== 'start' && action !== 'end')) {
          throw new BrabantError(
            'CONFIG_INVALID',
            'POST /maintenance needs ?node=<node id>&action=start|end',
          );
        }
        const move =
          action === 'start' ? await router.startMaintenance(node) : await router.endMaintenance(node);
        return reply(200, { node, action, move: move ?? null, leader: router.currentLeader });
      }
      if (url.pathname === '/nodes' && (req.method === 'POST' || req.method === 'DELETE')) {
        const id = url.searchParams.get('id');
        if (!id) throw new BrabantError('CONFIG_INVALID', `${req.method} /nodes needs ?id=<node id>`);
        if (req.method === 'DELETE') return reply(200, await router.removeNode(id));
        const region = url.searchParams.get('region');
        const node = url.searchParams.get('url');
        if (!region || !node)
          throw new BrabantError(
            'CONFIG_INVALID',
            'POST /nodes needs ?id=<node id>&region=<region>&url=<postgres://…>',
          );
        return reply(200, await router.addNode({ id, region, url: node }));
      }
      return reply(404, { error: `no ${req.method} ${url.pathname}` });
    };
    run().catch((err: unknown) =>
      reply(isBrabantError(err) && !err.retriable ? 409 : 500, {
        error: describeError(err),
        code: isBrabantError(err) ? err.code : undefined,
      }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}
