/**
 * Fault-injection points for crash tests: BRABANT_FAILPOINTS=name[:n],… makes the process kill
 * itself with SIGKILL the n-th time (default first) it reaches `failpoint(name)`. Off unless set.
 */
const spec = parse(process.env.BRABANT_FAILPOINTS ?? '');
const hits = new Map<string, number>();

function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name, n] = part.split(':');
    out.set(name!, n === undefined ? 1 : Number(n));
  }
  return out;
}

export function failpoint(name: string): void {
  const at = spec.get(name);
  if (at === undefined) return;
  const count = (hits.get(name) ?? 0) + 1;
  hits.set(name, count);
  if (count === at) {
    process.stderr.write(`failpoint ${name} reached (hit ${count}): killing process ${process.pid}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
