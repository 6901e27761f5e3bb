/**
 * Prometheus text exposition format, read back (pure): what `brabant status` and the dashboard
 * read of each service's /metrics, and what the alert-rule test checks names against.
 * https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The samples of a /metrics page; comment lines and lines that do not parse are left out. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL))
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    const value = Number(m[3]);
    if (!Number.isNaN(value) || m[3] === 'NaN') out.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** The metric names a /metrics page declares (its `# TYPE` lines), samples or not. */
export function declaredMetrics(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
    out.add(m[1]!);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(`${m[1]}${s}`);
  }
  return out;
}

/** Samples of one metric whose labels include `match`. */
export function samplesOf(samples: Sample[], name: string, match: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** The sum of a metric's samples (0 when there are none). */
export function sumOf(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samplesOf(samples, name, match).reduce((a, s) => a + s.value, 0);
}

/** The value of a metric's one sample, or undefined. */
export function oneValue(
  samples: Sample[],
  name: string,
  match: Record<string, string> = {},
): number | undefined {
  return samplesOf(samples, name, match)[0]?.value;
}
