/** Apply service entry point: config, logger, clients, metrics endpoint, signals. Wiring only. */
import { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { type ConfigOf, loadConfig } from '../runtime/config.ts';
import { describeError, isBrabantError } from '../runtime/errors.ts';
import { createKafka } from '../runtime/kafka.ts';
import { createLogger } from '../runtime/log.ts';
import { serveMetrics } from '../runtime/metrics.ts';
import { applyConfig } from './config.ts';
import { applyMetrics } from './metrics.ts';
import { runApply } from './service.ts';

async function main(): Promise<number> {
  let config: ConfigOf<typeof applyConfig>;
  try {
    config = loadConfig(applyConfig);
  } catch (err) {
    console.error(`brabant apply: ${describeError(err)}`);
    return 2;
  }
  const log = createLogger('apply', config.logLevel).child({ node: config.nodeId });
  const metrics = applyMetrics();
  const server =
    config.metricsPort >= 0
      ? await serveMetrics(metrics.registry, config.metricsPort, config.metricsHost)
      : undefined;
  if (server) log.info({ address: server.address() }, 'metrics endpoint listening');
  let requestStop: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => {
    requestStop = resolve;
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, 'stop requested');
      requestStop();
    });
  }
  try {
    await runApply({
      config,
      kafka: createKafka({ brokers: config.kafkaBrokers, clientId: `brabant-apply-${config.nodeId}`, log }),
      registry: new SchemaRegistryClient({ url: config.registryUrl }),
      log,
      metrics,
      stopRequested,
      backoff: { initialMs: Math.min(500, config.retryMaxMs), maxMs: config.retryMaxMs },
    });
    log.info('apply stopped');
    return 0;
  } catch (err) {
    log.fatal(
      { code: isBrabantError(err) ? err.code : undefined, error: describeError(err) },
      'apply stopped on an error',
    );
    console.error(`brabant apply: ${describeError(err)}`);
    return 1;
  } finally {
    server?.close();
  }
}

main().then((code) => process.exit(code));
