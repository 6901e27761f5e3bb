/**
 * The dashboard's memory (pure): the status reports of the last minutes, and the series its
 * plots draw from them — lag per origin, rows/s per node, conflicts/s per kind, retained WAL per
 * node — in uPlot's data layout (`[times, ...one array per series]`, null where a value is
 * missing: a service gone shows as a gap, not as zero). The newest point of each series is the
 * newest report's own figure, so the plots say what `brabant status --json` says.
 */
import type { StatusReport } from '../control/status-model.ts';

export interface Series {
  labels: string[];
  /** [unix seconds, ...values per label]. */
  data: (number | null)[][];
}

export interface DashboardSeries {
  lagSeconds: Series;
  rowsPerSecond: Series;
  conflictsPerSecond: Series;
  retainedWalBytes: Series;
}

export class History {
  private readonly reports: { t: number; r: StatusReport }[] = [];
  constructor(private readonly keepSeconds = 600) {}

  add(r: StatusReport): void {
    const t = Date.parse(r.at) / 1000;
    this.reports.push({ t, r });
    while (this.reports.length > 0 && this.reports[0]!.t < t - this.keepSeconds) this.reports.shift();
  }

  get latest(): StatusReport | undefined {
    return this.reports[this.reports.length - 1]?.r;
  }

  series(): DashboardSeries {
    return seriesOf(this.reports);
  }
}

const nodesOf = (r: StatusReport) => r.regions.flatMap((g) => g.nodes);

function build(
  points: { t: number; r: StatusReport }[],
  labels: string[],
  value: (r: StatusReport, label: string, i: number) => number | null,
): Series {
  return {
    labels,
    data: [points.map((p) => p.t), ...labels.map((l) => points.map((p, i) => value(p.r, l, i)))],
  };
}

/** The four plots' series from reports in time order (pure). */
export function seriesOf(points: { t: number; r: StatusReport }[]): DashboardSeries {
  const lagLabels = [
    ...new Set(
      points.flatMap((p) => nodesOf(p.r).flatMap((n) => n.apply.origins.map((o) => `${n.id} ← ${o.source}`))),
    ),
  ];
  const nodes = [...new Set(points.flatMap((p) => nodesOf(p.r).map((n) => n.id)))];
  const kinds = [
    ...new Set(
      points.flatMap((p) => nodesOf(p.r).flatMap((n) => Object.keys(n.apply.conflictsResolved ?? {}))),
    ),
  ].sort();
  const node = (r: StatusReport, id: string) => nodesOf(r).find((n) => n.id === id);
  /** The rate of a counter between the report before and this one; null across a restart or a gap. */
  const rate = (i: number, counter: (r: StatusReport) => number | undefined) => {
    if (i === 0) return null;
    const [a, b] = [points[i - 1]!, points[i]!];
    const [x, y] = [counter(a.r), counter(b.r)];
    if (x === undefined || y === undefined || y < x || b.t <= a.t) return null;
    return (y - x) / (b.t - a.t);
  };
  return {
    lagSeconds: build(points, lagLabels, (r, label) => {
      const [id, source] = label.split(' ← ') as [string, string];
      return node(r, id)?.apply.origins.find((o) => o.source === source)?.lagSeconds ?? null;
    }),
    rowsPerSecond: build(points, nodes, (_r, id, i) => rate(i, (r) => node(r, id)?.apply.rowsApplied)),
    conflictsPerSecond: build(points, kinds, (_r, kind, i) =>
      rate(i, (r) => {
        const all = nodesOf(r).map((n) => n.apply.conflictsResolved);
        return all.some((c) => c === undefined) ? undefined : all.reduce((s, c) => s + (c?.[kind] ?? 0), 0);
      }),
    ),
    retainedWalBytes: build(points, nodes, (r, id) => node(r, id)?.capture.slot?.retainedWalBytes ?? null),
  };
}
