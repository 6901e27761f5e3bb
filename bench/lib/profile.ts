/**
 * Summary of V8 CPU profiles (.cpuprofile, written by `node --cpu-prof`): where the time of a
 * capture or apply process went, by function (self and inclusive) and by module.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function moduleOf(url: string, root: string): string {
  if (url === '') return '(native/vm)';
  if (url.startsWith('node:')) return 'node:internal';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  return relative(root, path);
}

/** A frame's file: inside a package as package/path, else relative to the project. */
function fileOf(url: string, root: string): string {
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  return nm >= 0
    ? path.slice(nm + 'node_modules/'.length)
    : url.startsWith('node:')
      ? url
      : relative(root, path);
}

function frameName(n: ProfileNode, root: string): string {
  const f = n.callFrame;
  // line numbers of TypeScript files are those of tsx's output, not of the source: leave them out
  const line = f.url.endsWith('.ts') ? '' : `:${f.lineNumber + 1}`;
  const where = f.url === '' ? '' : ` ${fileOf(f.url, root)}${line}`;
  return `${f.functionName || '(anonymous)'}${where}`;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  bySelf: { name: string; ms: number }[];
  byInclusive: { name: string; ms: number }[];
  byModule: { name: string; ms: number }[];
}

export function summarize(file: string, root: string, top = 20): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  }
  const selfByName = new Map<string, number>();
  const byModule = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    total += ms;
    const fn = n.callFrame.functionName;
    if (fn === '(idle)') idle += ms;
    const name = frameName(n, root);
    selfByName.set(name, (selfByName.get(name) ?? 0) + ms);
    const mod = fn.startsWith('(') ? fn : moduleOf(n.callFrame.url, root);
    byModule.set(mod, (byModule.get(mod) ?? 0) + ms);
  }
  // inclusive time: a function's own time plus its callees', counted once per stack (recursion)
  const inclusive = new Map<string, number>();
  const parentOf = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  for (const [id, ms] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parentOf.get(cur)) {
      const name = frameName(byId.get(cur)!, root);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + ms);
    }
  }
  const sorted = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms }));
  return {
    file,
    totalMs: total,
    idleMs: idle,
    bySelf: sorted(selfByName),
    byInclusive: sorted(
      new Map(
        [...inclusive].filter(
          ([n]) => !n.startsWith('(root)') && !n.startsWith('(program)') && !n.startsWith('(idle)'),
        ),
      ),
    ),
    byModule: sorted(byModule),
  };
}

/** Every .cpuprofile under `dir`, summarized as text. */
export function summarizeDir(dir: string, root: string): string {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const path = join(d, f);
      if (statSync(path).isDirectory()) walk(path);
      else if (f.endsWith('.cpuprofile')) files.push(path);
    }
  };
  walk(dir);
  const out: string[] = [];
  for (const f of files.sort()) {
    const s = summarize(f, root);
    const busy = s.totalMs - s.idleMs;
    // tsx's module loader thread: busy only at start-up
    if (busy < 500) {
      out.push(`\n## ${relative(root, f)}: ${(busy / 1000).toFixed(2)} s busy (a helper thread; skipped)`);
      continue;
    }
    const pct = (ms: number) => `${((100 * ms) / Math.max(1, busy)).toFixed(1)}%`;
    out.push(
      `\n## ${relative(root, f)}: ${(s.totalMs / 1000).toFixed(1)} s profiled, ${(busy / 1000).toFixed(1)} s busy (not idle)`,
    );
    out.push('  by module (self time, % of busy):');
    for (const m of s.byModule)
      out.push(`    ${pct(m.ms).padStart(6)}  ${(m.ms / 1000).toFixed(2)} s  ${m.name}`);
    out.push('  hottest functions (self time):');
    for (const m of s.bySelf)
      out.push(`    ${pct(m.ms).padStart(6)}  ${(m.ms / 1000).toFixed(2)} s  ${m.name}`);
    out.push('  inclusive time (function and its callees):');
    for (const m of s.byInclusive)
      out.push(`    ${pct(m.ms).padStart(6)}  ${(m.ms / 1000).toFixed(2)} s  ${m.name}`);
  }
  return out.join('\n');
}
