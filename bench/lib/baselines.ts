/**
 * The baselines: PostgreSQL's native logical replication (publication + subscription) between the
 * stack's nodes, and pglogical 2 between two extra PostgreSQL nodes that preload it.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { initNode, postgresBinDir, type RunningPostgres, startNode } from '../../infra/postgres/postgres.ts';
import { currentUserIsRoot, freePort } from '../../infra/processes.ts';
import type { Db, Server } from './pg.ts';
import { adminQuery } from './pg.ts';
import { say, tag, until } from './util.ts';

function dsn(db: Db): string {
  return `host=127.0.0.1 port=${db.server.port} dbname=${db.name} user=postgres`;
}

/** A native subscription of `sub` to `pub`'s items table. */
export class NativeSubscription {
  readonly name = `bench_sub_${tag()}`;
  constructor(
    private readonly pub: Db,
    private readonly sub: Db,
  ) {}

  /** Publication on the source; subscription (and its slot on the source) on the target, without copying data. */
  async create(enabled: boolean): Promise<void> {
    await this.pub.client.query('create publication bench_pub for table items');
    await this.sub.client.query(
      `create subscription ${this.name} connection '${dsn(this.pub)}' publication bench_pub with (copy_data = false, enabled = ${enabled})`,
    );
  }

  async enable(): Promise<void> {
    await this.sub.client.query(`alter subscription ${this.name} enable`);
  }

  async drop(): Promise<void> {
    await this.sub.client.query(`drop subscription if exists ${this.name}`).catch(async () => {
      // the source is gone: detach the slot and drop locally
      await this.sub.client.query(`alter subscription ${this.name} disable`).catch(() => {});
      await this.sub.client.query(`alter subscription ${this.name} set (slot_name = none)`).catch(() => {});
      await this.sub.client.query(`drop subscription if exists ${this.name}`).catch(() => {});
    });
  }
}

/** pglogical on a pair of databases: a node in each, and subscriptions between them. */
export class PglogicalPair {
  private readonly t = tag();
  readonly subs: { on: Db; name: string }[] = [];

  constructor(
    private readonly a: Db,
    private readonly b: Db,
  ) {}

  /**
   * A pglogical node in each database, with `tables` in the default replication set (items by
   * default) and `insertOnly` (tables without a key: only their inserts replicate) in
   * default_insert_only.
   */
  async createNodes(tables = ['public.items'], insertOnly: string[] = []): Promise<void> {
    for (const [db, n] of [
      [this.a, 'a'],
      [this.b, 'b'],
    ] as const) {
      await db.client.query('create extension if not exists pglogical');
      await db.client.query('select pglogical.create_node(node_name := $1, dsn := $2)', [
        `bench_${n}_${this.t}`,
        dsn(db),
      ]);
      for (const [set, list] of [
        ['default', tables],
        ['default_insert_only', insertOnly],
      ] as const)
        for (const t of list)
          await db.client.query('select pglogical.replication_set_add_table($1, $2::regclass)', [set, t]);
    }
  }

  /** Subscriptions both ways (no copy, no forwarding), each replicating once this returns. */
  async bothWays(sets: string[] = ['default']): Promise<void> {
    const toB = await this.subscribe(this.a, this.b, sets);
    const toA = await this.subscribe(this.b, this.a, sets);
    await this.waitStatus(this.b, toB, 'replicating');
    await this.waitStatus(this.a, toA, 'replicating');
  }

  /**
   * Subscribes `to` to `from` (changes of `from` applied on `to`), no initial copy, no forwarding;
   * `sets` with 'ddl_sql' also takes what `pglogical.replicate_ddl_command` queues (W7).
   */
  async subscribe(from: Db, to: Db, sets: string[] = ['default']): Promise<string> {
    const name = `bench_sub_${to === this.a ? 'a' : 'b'}_${this.t}`;
    await to.client.query(
      `select pglogical.create_subscription(subscription_name := $1, provider_dsn := $2, replication_sets := $3::text[],
        synchronize_structure := false, synchronize_data := false, forward_origins := '{}')`,
      [name, dsn(from), sets],
    );
    this.subs.push({ on: to, name });
    return name;
  }

  async status(on: Db, name: string): Promise<string> {
    const r = await on.client.query<{ status: string }>(
      'select status from pglogical.show_subscription_status($1)',
      [name],
    );
    return r.rows[0]?.status ?? 'missing';
  }

  async waitStatus(on: Db, name: string, want: string, timeoutMs = 60_000): Promise<void> {
    await until(
      `pglogical subscription ${name} to be ${want}`,
      async () => (await this.status(on, name)) === want,
      {
        timeoutMs,
        intervalMs: 100,
      },
    );
  }

  async disable(on: Db, name: string): Promise<void> {
    await on.client.query('select pglogical.alter_subscription_disable($1, true)', [name]);
    await this.waitStatus(on, name, 'disabled');
  }

  async enable(on: Db, name: string): Promise<void> {
    await on.client.query('select pglogical.alter_subscription_enable($1, true)', [name]);
  }

  async drop(): Promise<void> {
    for (const s of this.subs)
      await s.on.client.query('select pglogical.drop_subscription($1, true)', [s.name]).catch(() => {});
  }
}

/** The size of a server log now: where to count its conflict lines from afterwards. */
export function logSize(file: string | undefined): number {
  if (file === undefined) return 0;
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Conflict lines pglogical logged for `database` since byte `from` of its server log. */
export function pglogicalConflicts(file: string | undefined, from: number, database: string): number {
  if (file === undefined) return 0;
  const text = readFileSync(file).subarray(from).toString();
  return text.split('\n').filter((l) => l.includes(` ${database} `) && /CONFLICT: remote/.test(l)).length;
}

const PGLOGICAL_LIB = () => join(postgresBinDir(), '..', 'lib', 'pglogical.so');

/**
 * Makes sure the pglogical 2 extension for PostgreSQL 15 is installed (Debian package
 * postgresql-15-pglogical, installed with apt-get when we are root); returns why not otherwise.
 */
export function ensurePglogicalInstalled(): string | undefined {
  if (existsSync(PGLOGICAL_LIB())) return undefined;
  if (!currentUserIsRoot())
    return 'pglogical is not installed (Debian package postgresql-15-pglogical) and installing it needs root';
  say('installing the Debian package postgresql-15-pglogical (baseline of W1 and W4)');
  try {
    execFileSync('apt-get', ['install', '-y', '-q', 'postgresql-15-pglogical'], {
      stdio: 'pipe',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch {
    try {
      execFileSync('apt-get', ['update', '-q'], { stdio: 'pipe' });
      execFileSync('apt-get', ['install', '-y', '-q', 'postgresql-15-pglogical'], {
        stdio: 'pipe',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim().split('\n').slice(-2).join(' ');
      return `apt-get install postgresql-15-pglogical failed: ${stderr ?? (err as Error).message}`;
    }
  }
  return existsSync(PGLOGICAL_LIB()) ? undefined : `package installed but ${PGLOGICAL_LIB()} is missing`;
}

/** Two extra PostgreSQL 15 nodes with the stack's settings plus pglogical preloaded (last_update_wins). */
export async function startPglogicalNodes(
  workDir: string,
  onStarted: (p: RunningPostgres) => void,
): Promise<{ a: Server; b: Server; nodes: RunningPostgres[]; version: string }> {
  const nodes: RunningPostgres[] = [];
  const servers: Server[] = [];
  // initdb runs as the postgres OS user: the parent folder must be traversable (not 0700 root).
  mkdirSync(join(workDir, 'pglogical'), { recursive: true, mode: 0o755 });
  for (const name of ['pgl-a', 'pgl-b']) {
    const spec = {
      name,
      port: await freePort(),
      dataDir: join(workDir, 'pglogical', name),
      logFile: join(workDir, 'logs', `${name}.log`),
    };
    initNode(spec);
    appendFileSync(
      join(spec.dataDir, 'brabant.conf'),
      [
        '# pglogical baseline of the benchmarks',
        "shared_preload_libraries = 'pglogical'",
        "pglogical.conflict_resolution = 'last_update_wins'",
        "pglogical.conflict_log_level = 'log'",
        '',
      ].join('\n'),
    );
    const running = await startNode(spec);
    onStarted(running);
    nodes.push(running);
    servers.push({
      id: name,
      url: running.url,
      port: running.port,
      logFile: spec.logFile,
      keepDatabases: true,
    });
  }
  const version = (
    await adminQuery<{ v: string }>(
      servers[0]!,
      "select default_version as v from pg_available_extensions where name = 'pglogical'",
    )
  ).rows[0]?.v;
  if (version === undefined) throw new Error('pglogical is not available on the extra nodes');
  return { a: servers[0]!, b: servers[1]!, nodes, version };
}
