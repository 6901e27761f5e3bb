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
  it('an age gauge grows with the clock after it was set, until set again', () => {
    let now = 1_000_000;
    const r = new MetricsRegistry();
    const lag = r.ageGauge('brabant_apply_lag_seconds', 'Lag', () => now);
    lag.set(0.03, { origin: 'vl-1' });
    expect(lag.get({ origin: 'vl-1' })).toBeCloseTo(0.03);
    now += 600_000; // ten minutes without a transaction or heartbeat
    expect(lag.get({ origin: 'vl-1' })).toBeCloseTo(600.03);
    expect(r.render()).toContain('brabant_apply_lag_seconds{origin="vl-1"} 600.03');
    lag.set(0.05, { origin: 'vl-1' });
    expect(lag.get({ origin: 'vl-1' })).toBeCloseTo(0.05);
  });
});
