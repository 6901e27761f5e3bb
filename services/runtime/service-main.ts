/**
 * The entry point shared by capture and apply (wiring only): configuration from a topology file
 * and the environment (service-config.ts; exit 2 on bad configuration, with the message), logger, metrics endpoint, SIGTERM/SIGINT → a graceful stop,
 * the Kafka client, and the exit code (0 stopped, 1 stopped on an error). The runtime is the
 * floor every service stands on: it knows nothing of the wire contract (services/protocol).
 */
import type { Kafka } from 'kafkajs';
import type { ConfigOf, Spec } from './config.ts';
import { describeError, isBrabantError } from './errors.ts';
import { createKafka } from './kafka.ts';
import { createLogger, type Logger } from './log.ts';
import { type MetricsRegistry, serveMetrics } from './metrics.ts';
import { Readiness } from './readiness.ts';
import { redactText } from './redact.ts';
import {
  applyPgPassword,
  loadSecurity,
  type SecurityConfig,
  type ServiceSecurity,
  secretsOf,
} from './security.ts';
import { loadServiceConfig, type TopologyBinding } from './service-config.ts';
import type { BackoffPolicy } from './supervise.ts';

/** What every service's configuration has. */
interface CommonConfig extends SecurityConfig {
  nodeId: string;
  kafkaBrokers: string[];
  retryMaxMs: number;
  metricsPort: number;
  metricsHost: string;
  logLevel: string;
}

export interface ServiceDeps<C, M> {
  config: C;
  kafka: Kafka;
  /** TLS and credentials of its connections (secrets read; never to be logged). */
  security: ServiceSecurity;
  log: Logger;
  metrics: M;
  stopRequested: Promise<void>;
  backoff: BackoffPolicy;
  /** What /healthz says: the service sets it ready once it really streams. */
  readiness: Readiness;
}

export async function serviceMain<S extends Spec, M extends { registry: MetricsRegistry }>(opts: {
  name: 'capture' | 'apply';
  spec: S;
  /** How its options follow from a topology file (--topology FILE --node ID). */
  topology: TopologyBinding<S>;
  /** Fields every log line of the service carries. */
  logContext: (config: ConfigOf<S>) => Record<string, unknown>;
  metrics: () => M;
  run: (deps: ServiceDeps<ConfigOf<S>, M>) => Promise<void>;
}): Promise<number> {
  const { name } = opts;
  let config: ConfigOf<S> & CommonConfig;
  let security: ServiceSecurity;
  try {
    config = loadServiceConfig(name, opts.spec, opts.topology) as ConfigOf<S> & CommonConfig;
    security = loadSecurity(config);
  } catch (err) {
    console.error(redactText(`brabant ${name}: ${describeError(err)}`));
    return 2;
  }
  applyPgPassword(security);
  const secrets = secretsOf(security);
  const log = createLogger(name, config.logLevel, secrets).child(opts.logContext(config));
  const metrics = opts.metrics();
  const readiness = new Readiness(metrics.registry, name);
  const server =
    config.metricsPort >= 0
      ? await serveMetrics(metrics.registry, config.metricsPort, config.metricsHost, readiness.probe)
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
    await opts.run({
      config,
      kafka: createKafka({
        brokers: config.kafkaBrokers,
        clientId: `brabant-${name}-${config.nodeId}`,
        log,
        ...security.kafka,
      }),
      security,
      log,
      metrics,
      stopRequested,
      backoff: { initialMs: Math.min(500, config.retryMaxMs), maxMs: config.retryMaxMs },
      readiness,
    });
    log.info(`${name} stopped`);
    return 0;
  } catch (err) {
    log.fatal(
      { code: isBrabantError(err) ? err.code : undefined, error: describeError(err) },
      `${name} stopped on an error`,
    );
    console.error(redactText(`brabant ${name}: ${describeError(err)}`, secrets));
    return 1;
  } finally {
    server?.close();
  }
}
