/**
 * Whether a service really does its work yet, for /healthz and the `brabant_<service>_ready`
 * gauge: capture is ready once its slot streams, apply once it reads every cluster and holds its
 * origins; both fall back to not ready while a session restarts. A process that merely runs is
 * not ready (a write right after a "ready" capture would otherwise be missed).
 */
import type { Gauge, HealthProbe, MetricsRegistry } from './metrics.ts';

export class Readiness {
  private ready = false;
  private detail = 'starting';
  private readonly gauge: Gauge;

  constructor(registry: MetricsRegistry, service: string) {
    this.gauge = registry.gauge(
      `brabant_${service}_ready`,
      `Whether ${service} really streams (1: ${service === 'capture' ? 'its slot streams into Kafka' : 'it reads every cluster and holds its origins'}) or not yet / not any more (0)`,
    );
    this.gauge.set(0);
  }

  set(ready: boolean, detail: string): void {
    this.ready = ready;
    this.detail = detail;
    this.gauge.set(ready ? 1 : 0);
  }

  readonly probe: HealthProbe = () => ({ ready: this.ready, detail: this.detail });
}
