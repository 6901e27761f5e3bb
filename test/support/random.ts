/** Seeded randomness for randomized tests: every run prints its seed, an environment variable replays it. */

/** mulberry32 from `seed`: `rand(n)` is in [0, n). The seed is `process.env[envVar]` when set, else random. */
export function seeded(what: string, envVar: string): { seed: number; rand: (n: number) => number } {
  const seed = Number(process.env[envVar] ?? Math.floor(Math.random() * 1e6));
  console.log(`${what} seed ${seed} (replay with ${envVar}=${seed})`);
  let r = seed >>> 0;
  const rand = (n: number) => {
    r = (r + 0x6d2b79f5) >>> 0;
    let x = Math.imul(r ^ (r >>> 15), r | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
  return { seed, rand };
}

/** A second generator derived from a seed (e.g. one per concurrent writer), replayed with it. */
export function derived(seed: number, stream: number): (n: number) => number {
  let r = (seed * 7919 + stream * 104729) >>> 0;
  return (n: number) => {
    r = (r + 0x6d2b79f5) >>> 0;
    let x = Math.imul(r ^ (r >>> 15), r | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
}
