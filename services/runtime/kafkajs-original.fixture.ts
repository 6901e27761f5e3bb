/** For the kafkajs patch's tests: kafkajs's own modules as shipped, and repeatable random inputs. */
import { readFileSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);

/** A fresh copy of one of kafkajs's own modules as shipped (the module cache may hold a patched one). */
export function kafkajsOriginal<T>(id: string): T {
  const path = require.resolve(id);
  const m = new Module(path) as Module & { _compile(code: string, file: string): void };
  m.filename = path;
  m.paths = (Module as unknown as { _nodeModulePaths(d: string): string[] })._nodeModulePaths(dirname(path));
  m._compile(readFileSync(path, 'utf8'), path);
  return m.exports as T;
}

/** Deterministic pseudo-random numbers in [0, 1) (a seed per case), so a failure replays. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
