/** `brabant switchover` and `brabant maintenance`: calls to a region's router control API. */
import { BrabantError } from '../runtime/errors.ts';
import type { Topology } from '../runtime/topology.ts';

/**
 * The router URL of a region from --router, BRABANT_ROUTER_URLS (region=url,…), or the topology's
 * router of the region (its control API listens on the router's host, 127.0.0.1 here).
 */
export function routerUrl(
  opts: { router?: string; region?: string; topology?: Topology },
  env = process.env,
): string {
  if (opts.router) return opts.router.replace(/\/$/, '');
  const pairs = (env.BRABANT_ROUTER_URLS ?? '').split(',').filter(Boolean);
  for (const p of pairs) {
    const [r, u] = p.split('=');
    if (r === opts.region && u) return u.replace(/\/$/, '');
  }
  const fromTopology = opts.topology?.routers.find((r) => r.region === opts.region);
  if (fromTopology !== undefined) return `http://127.0.0.1:${fromTopology.controlPort}`;
  throw new BrabantError(
    'CONFIG_INVALID',
    opts.region
      ? `no router URL for region ${opts.region}: pass --router http://host:port, set BRABANT_ROUTER_URLS=${opts.region}=http://host:port, or declare the region's router in the topology file (--topology FILE)`
      : 'say which router: --region R (with BRABANT_ROUTER_URLS) or --router http://host:port',
  );
}

async function call(url: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', signal: AbortSignal.timeout(120_000) });
  } catch (err) {
    throw new BrabantError(
      'COMPONENT_START_FAILED',
      `router at ${new URL(url).origin} does not answer: ${(err as Error).message}`,
    );
  }
  const body = (await res.json()) as { error?: string };
  if (!res.ok) throw new BrabantError('CONFIG_INVALID', body.error ?? `router answered ${res.status}`);
  return body;
}

export async function switchover(opts: {
  router?: string;
  region?: string;
  to?: string;
  topology?: Topology;
}): Promise<number> {
  if (!opts.to) throw new BrabantError('CONFIG_INVALID', 'switchover needs --to <node id>');
  const move = (await call(`${routerUrl(opts)}/switchover?to=${encodeURIComponent(opts.to)}`)) as {
    from: string;
    to: string;
    blockedMs: number;
  };
  console.log(`switchover ${move.from} → ${move.to}: writes waited ${move.blockedMs} ms`);
  return 0;
}

export async function maintenance(opts: {
  router?: string;
  region?: string;
  topology?: Topology;
  action?: string;
  node?: string;
}): Promise<number> {
  if ((opts.action !== 'start' && opts.action !== 'end') || !opts.node) {
    throw new BrabantError(
      'CONFIG_INVALID',
      'usage: brabant maintenance start|end <node> --region R | --router URL',
    );
  }
  const r = (await call(
    `${routerUrl(opts)}/maintenance?node=${encodeURIComponent(opts.node)}&action=${opts.action}`,
  )) as {
    leader: string;
    move: { from: string; to: string; blockedMs: number } | null;
  };
  console.log(
    `maintenance ${opts.action} ${opts.node}: leader ${r.leader}${r.move ? ` (moved ${r.move.from} → ${r.move.to}, writes waited ${r.move.blockedMs} ms)` : ''}`,
  );
  return 0;
}
