/**
 * One capture test's world on vl-1: a fresh database (optionally SQL_ASCII, which stores any
 * bytes) with the given schema, its capture names, a client, and capture processes; all of it
 * undone by `cleanup()` (call it from afterEach).
 */
import pg from 'pg';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { type CaptureNames, captureNames, type ServiceProcess, startCapture } from './services.ts';
import { node, uniqueName } from './stack.ts';

export class CaptureWorld {
  private readonly undo: (() => Promise<unknown>)[] = [];

  async database(
    sql: string,
    encoding: 'UTF8' | 'SQL_ASCII' = 'UTF8',
  ): Promise<{ names: CaptureNames; client: pg.Client; url: string }> {
    const name = uniqueName('t');
    const admin = new pg.Client({ connectionString: node('vl-1').url });
    await admin.connect();
    try {
      await admin.query(
        encoding === 'UTF8'
          ? `create database ${name}`
          : `create database ${name} encoding 'SQL_ASCII' lc_collate 'C' lc_ctype 'C' template template0`,
      );
    } finally {
      await admin.end();
    }
    this.undo.push(async () => {
      const c = new pg.Client({ connectionString: node('vl-1').url });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`).finally(() => c.end());
    });
    const url = withDatabase(node('vl-1').url, name);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    this.undo.push(() => client.end());
    await client.query(sql);
    return { names: captureNames(node('vl-1'), url), client, url };
  }

  capture(names: CaptureNames, env: Record<string, string> = {}): ServiceProcess {
    const p = startCapture(names, env);
    this.undo.push(() => p.kill('SIGKILL'));
    return p;
  }

  /** Also undoes what a test registers itself (e.g. a replication pair's cleanup). */
  later(fn: () => Promise<unknown>): void {
    this.undo.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const fn of this.undo.splice(0).reverse()) await fn().catch(() => {});
  }
}
