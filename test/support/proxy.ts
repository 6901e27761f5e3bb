/** The router's proxy started in the test's process, on a free port, with the options a test sets. */
import { pino } from 'pino';
import { freePort } from '../../infra/processes.ts';
import { clientAccessOf } from '../../services/router/client-access.ts';
import { type clientAccessConfig, clientAccessDefaults } from '../../services/router/config.ts';
import { type ProxySettings, TransactionProxy } from '../../services/router/proxy.ts';
import type { Target } from '../../services/router/server-connection.ts';
import type { ConfigOf } from '../../services/runtime/config.ts';
import { MetricsRegistry } from '../../services/runtime/metrics.ts';

export type AccessOptions = Partial<ConfigOf<typeof clientAccessConfig>>;

/** Proxy settings: a free port unless given, the declared defaults of the client options unless given. */
export async function proxySettings(
  s: Partial<Omit<ProxySettings, 'clients'>> & { access?: AccessOptions } = {},
): Promise<ProxySettings> {
  const { access, ...rest } = s;
  return {
    port: await freePort(),
    database: 'app',
    poolSize: 1,
    connectTimeoutMs: 2000,
    waitTimeoutMs: 5000,
    ...rest,
    clients: clientAccessOf({ ...clientAccessDefaults(), ...access }),
  };
}

export interface StartedProxy {
  proxy: TransactionProxy;
  port: number;
  metrics: MetricsRegistry;
  stop: () => Promise<void>;
}

export async function startProxy(
  target: Target,
  s: Parameters<typeof proxySettings>[0] = {},
): Promise<StartedProxy> {
  const settings = await proxySettings(s);
  const metrics = new MetricsRegistry();
  const proxy = new TransactionProxy(
    settings,
    pino({ level: process.env.ROUTER_TEST_LOG ?? 'silent' }),
    metrics,
    () => {},
  );
  await proxy.start(target);
  return { proxy, port: settings.port, metrics, stop: () => proxy.stop() };
}
