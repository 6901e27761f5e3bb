import { describe, expect, it } from 'vitest';
import { MetricsRegistry } from './metrics.ts';

describe('metrics', () => {
  it('renders counters, gauges and histograms in Prometheus text format', () => {
    const r = new MetricsRegistry();
    const c = r.counter('brabant_events_total', 'Events');
    const g = r.gauge('brabant_lag_bytes', 'Lag');
    const h = r.histogram('brabant_batch_events', 'Batch size', [1, 10]);
    c.inc({ kind: 'insert' });
    c.inc({ kind: 'insert' }, 2);
    g.set(42, { slot: 'a"b' });
    h.observe(5);
    h.observe(50);
    const text = r.render();
    expect(text).toContain('# TYPE brabant_events_total counter\nbrabant_events_total{kind="insert"} 3');
    expect(text).toContain('brabant_lag_bytes{slot="a\\"b"} 42');
    expect(text).toContain('brabant_batch_events_bucket{le="1"} 0');
    expect(text).toContain('brabant_batch_events_bucket{le="10"} 1');
    expect(text).toContain('brabant_batch_events_bucket{le="+Inf"} 2');
    expect(text).toContain('brabant_batch_events_sum 55');
  });
});
