/**
 * The Prometheus alert rules (infra/prometheus/brabant-alerts.yml) and the Grafana dashboard
 * (infra/grafana/brabant-dashboard.json) name only metrics the services really export: every
 * `brabant_*` name in their expressions is declared on the /metrics of a running capture, apply
 * or router (scraped from a deployment), and the rules cover what operators page on.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { declaredMetrics } from '../services/control/prometheus-text.ts';
import { type Deployment, deploy, startServices } from './support/operator.ts';

let d: Deployment;
beforeAll(async () => {
  d = await deploy('alerts');
  await startServices(d);
}, 300_000);
afterAll(async () => {
  await d?.stop();
});

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string };
}

const names = (expr: string) => [...expr.matchAll(/\bbrabant_[a-z0-9_]+/g)].map((m) => m[0]);

describe('alert rules and the Grafana dashboard', { timeout: 120_000 }, () => {
  it('name only metrics the services export', async () => {
    const rules = (
      parse(readFileSync('infra/prometheus/brabant-alerts.yml', 'utf8')) as { groups: { rules: Rule[] }[] }
    ).groups.flatMap((g) => g.rules);
    for (const r of rules) {
      expect(r.alert, JSON.stringify(r)).toMatch(/^Brabant[A-Za-z]+$/);
      expect(r.expr.length).toBeGreaterThan(0);
      expect(['warning', 'critical']).toContain(r.labels.severity);
      expect(r.annotations.summary.length).toBeGreaterThan(0);
    }
    const alerts = rules.map((r) => r.alert);
    for (const needed of [
      'BrabantApplyLagHigh',
      'BrabantStreamPaused',
      'BrabantDeadLetters',
      'BrabantSlotRetainedWal',
      'BrabantRouterWithoutLeader',
    ])
      expect(alerts).toContain(needed);

    const grafana = JSON.parse(readFileSync('infra/grafana/brabant-dashboard.json', 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const exprs = [
      ...rules.map((r) => r.expr),
      ...grafana.panels.flatMap((p) => p.targets.map((t) => t.expr)),
    ];
    const named = new Set(exprs.flatMap(names));
    expect(named.size).toBeGreaterThan(10);

    const pages: string[] = [];
    for (const n of d.topology.nodes)
      for (const port of [n.captureMetricsPort, n.applyMetricsPort])
        pages.push(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    for (const r of d.topology.routers)
      pages.push(await (await fetch(`http://127.0.0.1:${r.controlPort}/metrics`)).text());
    const exported = new Set(pages.flatMap((p) => [...declaredMetrics(p)]));
    const missing = [...named].filter((m) => !exported.has(m));
    expect(missing, `named but not exported: ${missing.join(', ')}`).toEqual([]);
  });
});
