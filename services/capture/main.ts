/** Capture service entry point: config, logger, clients, metrics endpoint, signals. Wiring only. */
import { SchemaRegistryClient } from '../protocol/schema-registry.ts';
import { type ConfigOf, loadConfig } from '../runtime/config.ts';
import { describeError, isBrabantError } from '../runtime/errors.ts';
import { createKafka } from '../runtime/kafka.ts';
import { createLogger } from '../runtime/log.ts';
import { serveMetrics } from '../runtime/metrics.ts';
import { captureConfig } from './config.ts';
import { captureMetrics } from './metrics.ts';
import { runCapture } from './service.ts';

async function main(): Promise<number> {
  let config: ConfigOf<typeof captureConfig>;
  try {
    config = loadConfig(captureConfig);
  } catch (err) {
    console.error(`brabant capture: ${describeError(err)}`);
    return 2;
  }
  const log = createLogger('capture', config.logLevel).child({ node: config.nodeId, region: config.region });
  const metrics = captureMetrics();
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
    await runCapture({
      config,
      kafka: createKafka({ brokers: config.kafkaBrokers, clientId: `brabant-capture-${config.nodeId}`, log }),
      registry: new SchemaRegistryClient({ url: config.registryUrl }),
      log,
      metrics,
      stopRequested,
      backoff: { initialMs: Math.min(500, config.retryMaxMs), maxMs: config.retryMaxMs },
    });
    log.info('capture stopped');
    return 0;
  } catch (err) {
    log.fatal(
      { code: isBrabantError(err) ? err.code : undefined, error: describeError(err) },
      'capture stopped on an error',
    );
    console.error(`brabant capture: ${describeError(err)}`);
    return 1;
  } finally {
    server?.close();
  }
}

main().then((code) => process.exit(code));
