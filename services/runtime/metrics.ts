/**
 * Prometheus text-format metrics (counters, gauges, histograms with labels) and the HTTP
 * endpoint that serves them at /metrics (and /healthz). Small on purpose: no client library.
 */
import { createServer, type Server } from 'node:http';

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys
    .map(
      (k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`,
    )
    .join(',');
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) lines.push(`${this.name} 0`);
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return lines.join('\n');
  }
}

export class Gauge implements Metric {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  set(value: number, labels: Labels = {}): void {
    this.values.set(labelKey(labels), value);
  }
  get(labels: Labels = {}): number | undefined {
    return this.values.get(labelKey(labels));
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return lines.join('\n');
  }
}

/**
 * A gauge of an age or a lag: each value grows by one per second after it was set, until it is
 * set again. Apply's lag is one: set to "now − commit time" whenever a transaction or heartbeat
 * of an origin is applied, it must go on growing while nothing arrives (a stalled stream), not
 * keep its last value.
 */
export class AgeGauge implements Metric {
  private readonly values = new Map<string, { value: number; at: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly now: () => number = Date.now,
  ) {}
  set(value: number, labels: Labels = {}): void {
    this.values.set(labelKey(labels), { value, at: this.now() });
  }
  get(labels: Labels = {}): number | undefined {
    const v = this.values.get(labelKey(labels));
    return v === undefined ? undefined : v.value + (this.now() - v.at) / 1000;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const now = this.now();
    for (const [k, v] of this.values)
      lines.push(`${this.name}${k ? `{${k}}` : ''} ${v.value + (now - v.at) / 1000}`);
    return lines.join('\n');
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}
  observe(value: number, labels: Labels = {}): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (s === undefined) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : '';
      for (const [i, b] of this.buckets.entries())
        lines.push(`${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}`);
      lines.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum${k ? `{${k}}` : ''} ${s.sum}`);
      lines.push(`${this.name}_count${k ? `{${k}}` : ''} ${s.count}`);
    }
    return lines.join('\n');
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];
  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help));
  }
  ageGauge(name: string, help: string, now?: () => number): AgeGauge {
    return this.add(new AgeGauge(name, help, now));
  }
  histogram(name: string, help: string, buckets: number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }
  private add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  render(): string {
    return `${this.metrics.map((m) => m.render()).join('\n')}\n`;
  }
}

/** What /healthz says: 200 `ready: …` once the service really works, 503 `not ready: …` before. */
export type HealthProbe = () => { ready: boolean; detail: string };

/** Serves /metrics and /healthz on 127.0.0.1 (or host) — port 0 picks a free port. */
export async function serveMetrics(
  registry: MetricsRegistry,
  port: number,
  host = '127.0.0.1',
  health: HealthProbe = () => ({ ready: true, detail: 'running' }),
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(registry.render());
    } else if (req.url === '/healthz') {
      const h = health();
      res.writeHead(h.ready ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(`${h.ready ? 'ready' : 'not ready'}: ${h.detail}\n`);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
