/** Router entry point (`--topology FILE --region R`, or the environment): config, logger, router, control API, signals. Wiring only. */
import type { ConfigOf } from '../runtime/config.ts';
import { describeError } from '../runtime/errors.ts';
import { createLogger } from '../runtime/log.ts';
import { loadServiceConfig } from '../runtime/service-config.ts';
import { routerConfig, routerTopology } from './config.ts';
import { serveControl } from './control-api.ts';
import { parseNodes, Router } from './router.ts';

async function main(): Promise<number> {
  let config: ConfigOf<typeof routerConfig>;
  let router: Router;
  const log = createLogger('router');
  try {
    config = loadServiceConfig('router', routerConfig, routerTopology);
    router = new Router(config, parseNodes(config.nodes), log.child({ region: config.region }));
  } catch (err) {
    console.error(`brabant router: ${describeError(err)}`);
    return 2;
  }
  try {
    await router.start();
    const server = await serveControl(router, config.controlPort);
    log.info({ control: server.address() }, 'control API listening');
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    server.close();
    await router.stop();
    return 0;
  } catch (err) {
    log.fatal({ error: describeError(err) }, 'router stopped on an error');
    console.error(`brabant router: ${describeError(err)}`);
    await router.stop().catch(() => {});
    return 1;
  }
}

main().then((code) => process.exit(code));
