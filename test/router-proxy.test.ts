/**
 * The router's proxy against a real PostgreSQL: transaction pooling (a client holds a server
 * connection for one transaction), session settings that travel with the client, hold / drain /
 * release, a lost server connection (only the transaction on it fails; new ones wait until the
 * router trusts the node again), repointing, cancel requests, and clear errors for what it does
 * not serve.
 */
import { connect } from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../infra/processes.ts';
import { TransactionProxy } from '../services/router/proxy.ts';
import { type Target, targetOf } from '../services/router/server-connection.ts';
import { cancelRequest, errorResponse, message, query } from '../services/router/wire.ts';
import { MetricsRegistry } from '../services/runtime/metrics.ts';
import { type FakeNode, fakeNode } from './support/fake-node.ts';
import { proxySettings } from './support/proxy.ts';
import { seeded } from './support/random.ts';
import { RawClient } from './support/raw-client.ts';
import { createDatabase, region } from './support/stack.ts';

let dbA: Awaited<ReturnType<typeof createDatabase>>;
let dbB: Awaited<ReturnType<typeof createDatabase>>;
let proxy: TransactionProxy;
let port: number;
let user: string;
const suspicions: string[] = [];
const metrics = new MetricsRegistry();
const open: pg.Client[] = [];

async function client(extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, user, database: 'app', ...extra });
  c.on('error', () => {});
  await c.connect();
  open.push(c);
  return c;
}

async function direct(url: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}

/** The backend pids the proxy holds open on a database. */
async function proxyBackends(db: string): Promise<number[]> {
  const r = await direct(
    dbA.url,
    `select pid from pg_stat_activity where datname = $1 and backend_type = 'client backend' and pid <> pg_backend_pid() and application_name not like 'direct%'`,
    [db],
  );
  return r.rows.map((x) => x.pid as number);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  const n = region('vlaanderen').nodes[0]!;
  dbA = await createDatabase(n, 'proxy');
  dbB = await createDatabase(n, 'proxy');
  for (const db of [dbA, dbB])
    await direct(db.url, `create table t (id int primary key, db text default current_database())`);
  port = await freePort();
  const target: Target = targetOf(dbA.url);
  user = target.user;
  proxy = new TransactionProxy(
    await proxySettings({ port, poolSize: 1, waitTimeoutMs: 1500 }),
    pino({ level: process.env.ROUTER_TEST_LOG ?? 'silent' }),
    metrics,
    (_t, reason) => suspicions.push(reason),
  );
  await proxy.start(target);
});

afterAll(async () => {
  for (const c of open) await c.end().catch(() => {});
  await proxy?.stop();
  await dbA?.drop();
  await dbB?.drop();
});

describe('router proxy', { timeout: 60_000 }, () => {
  it('pools by transaction: with one server connection, a second client waits for the first one’s commit, not its session', async () => {
    const a = await client();
    const b = await client();
    expect((await a.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    // extended protocol (parse/bind/execute/sync in one go), then b between a's transactions
    await a.query('insert into t (id) values ($1)', [1]);
    expect((await b.query('select count(*)::int as n from t')).rows[0].n).toBe(1);
    await a.query('begin');
    await a.query('insert into t (id) values ($1)', [2]);
    let bDone = 0;
    const bQuery = b.query('select count(*)::int as n from t').then((r) => {
      bDone = Date.now();
      return r.rows[0].n as number;
    });
    await sleep(300);
    expect(bDone).toBe(0); // waiting: the only server connection is in a's transaction
    const committed = Date.now();
    await a.query('commit');
    expect(await bQuery).toBe(2);
    expect(bDone).toBeGreaterThanOrEqual(committed);
    expect(await proxyBackends(dbA.name)).toHaveLength(1);
  });

  it('carries each client’s settings (startup and SET) to whichever server connection runs its transaction', async () => {
    const a = await client({ application_name: 'orders', statement_timeout: 4321 });
    const b = await client();
    await b.query(`set timezone to 'Asia/Tokyo'`);
    for (let i = 0; i < 3; i++) {
      expect((await a.query('show application_name')).rows[0].application_name).toBe('orders');
      expect((await a.query('show statement_timeout')).rows[0].statement_timeout).toBe('4321ms');
      expect((await a.query('show timezone')).rows[0].TimeZone).not.toBe('Asia/Tokyo');
      expect((await b.query('show timezone')).rows[0].TimeZone).toBe('Asia/Tokyo');
      expect((await b.query('show application_name')).rows[0].application_name).toBe('');
      expect((await b.query('show statement_timeout')).rows[0].statement_timeout).toBe('0');
    }
  });

  it('holds new transactions while paused; drain waits for the one in flight; release lets the rest go', async () => {
    const a = await client();
    const b = await client();
    await a.query('begin');
    await a.query('insert into t (id) values (10)');
    proxy.hold();
    let drained = false;
    const draining = proxy.drain(5000).then(() => {
      drained = true;
    });
    let bDone = false;
    const bQuery = b.query('insert into t (id) values (11)').then(() => {
      bDone = true;
    });
    await sleep(200);
    expect(drained).toBe(false);
    await a.query('commit'); // the transaction in flight finishes while held
    await draining;
    await sleep(100);
    expect(bDone).toBe(false);
    proxy.release();
    await bQuery;
    expect(bDone).toBe(true);
  });

  it('a drain that outlasts its deadline says how many transactions still run', async () => {
    const a = await client();
    await a.query('begin');
    proxy.hold();
    await expect(proxy.drain(200)).rejects.toThrow(/1 transaction\(s\) still running after 200 ms/);
    proxy.release();
    await a.query('rollback');
  });

  it('a lost server connection fails only the transaction on it; new ones wait until the node is trusted again', async () => {
    const a = await client();
    const b = await client();
    await a.query('begin');
    await a.query('insert into t (id) values (20)');
    // (caught at once: it fails while the test is still terminating the backend)
    const running = a.query('select pg_sleep(10)').catch((err: Error) => err);
    await sleep(100);
    const [pid] = await proxyBackends(dbA.name);
    suspicions.length = 0;
    await direct(dbA.url, 'select pg_terminate_backend($1)', [pid]);
    // the server's own FATAL reaches the client, then the proxy ends the client connection
    expect(String(await running)).toMatch(/terminating connection due to administrator command/);
    let bDone = false;
    const bQuery = b.query('insert into t (id) values (21)').then(() => {
      bDone = true;
    });
    await sleep(300);
    expect(suspicions).toHaveLength(1);
    expect(proxy.suspectedSince).toBeDefined();
    expect(bDone).toBe(false); // waits, does not fail
    proxy.trust();
    await bQuery;
    expect((await direct(dbA.url, 'select id from t where id >= 20 order by id')).rows).toEqual([{ id: 21 }]);
    expect(metrics.render()).toMatch(/brabant_router_failed_transactions_total\{reason="server_lost"\} 1/);
  });

  it('an idle server connection lost: no client fails, the next transaction waits for trust', async () => {
    const b = await client();
    await b.query('select 1');
    const [pid] = await proxyBackends(dbA.name);
    suspicions.length = 0;
    await direct(dbA.url, 'select pg_terminate_backend($1)', [pid]);
    await sleep(100);
    expect(suspicions).toHaveLength(1);
    const q = b.query('select 2 as two');
    await sleep(200);
    proxy.trust();
    expect((await q).rows).toEqual([{ two: 2 }]);
  });

  it('repoints: clients keep their connections and their next transaction runs on the new target', async () => {
    const a = await client();
    expect((await a.query('select current_database() as d')).rows[0].d).toBe(dbA.name);
    proxy.repoint(targetOf(dbB.url));
    expect((await a.query('select current_database() as d')).rows[0].d).toBe(dbB.name);
    await a.query('insert into t (id) values (1)');
    expect((await direct(dbB.url, 'select db from t')).rows).toEqual([{ db: dbB.name }]);
    proxy.repoint(targetOf(dbA.url));
    expect((await a.query('select current_database() as d')).rows[0].d).toBe(dbA.name);
  });

  it('passes a cancel request to the server running the client’s query', async () => {
    const a = await client();
    const sleeping = a.query('select pg_sleep(20)');
    await sleep(300);
    const { processID, secretKey } = a as unknown as { processID: number; secretKey: number };
    await new Promise<void>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => s.end(cancelRequest(processID, secretKey)));
      s.on('close', () => resolve());
      s.on('error', reject);
    });
    await expect(sleeping).rejects.toThrow(/canceling statement due to user request/);
    expect((await a.query('select 3 as three')).rows).toEqual([{ three: 3 }]);
  });

  it('a client that leaves inside a transaction does not leave it open for the next one', async () => {
    const a = await client();
    await a.query('begin');
    await a.query('insert into t (id) values (30)');
    await a.end();
    const b = await client();
    // same (only) server connection slot: a fresh connection, not one inside a's transaction
    expect((await b.query('select count(*)::int as n from t where id = 30')).rows[0].n).toBe(0);
    await b.query('begin');
    await b.query('rollback');
  });

  it('a client gone during COPY FROM STDIN: the router ends the COPY; the connection serves the next client, drain is not held', async () => {
    const raw = await RawClient.login(port, { user, database: 'app' });
    raw.write(query('copy t (id) from stdin'));
    await raw.until('G');
    raw.write(message('d', Buffer.from('60\n')));
    const before = await proxyBackends(dbA.name);
    // begun while the COPY runs: it resolves once the connection is free again
    const drained = proxy.drain(5000);
    raw.destroy();
    await drained;
    expect(await proxyBackends(dbA.name)).toEqual(before);
    const b = await client();
    expect((await b.query('select count(*)::int as n from t where id = 60')).rows[0].n).toBe(0);
  });

  it('a client that gives up while held: its transaction never runs, not even after the release', async () => {
    const a = await client();
    proxy.hold();
    const q = a.query('insert into t (id) values (50)').catch((err: Error) => err);
    await sleep(100);
    (a as unknown as { connection: { stream: { destroy: () => void } } }).connection.stream.destroy();
    await q;
    await sleep(100);
    proxy.release();
    await sleep(300);
    expect((await direct(dbA.url, 'select count(*)::int as n from t where id = 50')).rows[0].n).toBe(0);
    // and the pool is whole: the next client gets the server connection
    const b = await client();
    expect((await b.query('select 5 as five')).rows).toEqual([{ five: 5 }]);
  });

  it('a transaction held longer than the wait timeout gets an error that names the setting', async () => {
    const b = await client();
    proxy.hold();
    try {
      await expect(b.query('select 1')).rejects.toThrow(
        /BRABANT_ROUTER_WAIT_TIMEOUT_MS.*held for a switchover/,
      );
    } finally {
      proxy.release();
    }
    expect(metrics.render()).toMatch(/brabant_router_failed_transactions_total\{reason="wait_timeout"\} 1/);
  });

  it('answers an SSL request with N and refuses what it does not serve with a clear error', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () =>
        s.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])),
      );
      s.once('data', (d) => {
        s.destroy();
        resolve(d.toString());
      });
      s.on('error', reject);
    });
    expect(answer).toBe('N');
    await expect(client({ database: 'other' })).rejects.toThrow(
      /database "other" is not served by this router: connect to "app"/,
    );
    await expect(client({ user: 'someone' })).rejects.toThrow(/role "someone" is not served by this router/);
    await expect(client({ options: '-c search_path=x' })).rejects.toThrow(
      /startup parameter 'options' is not supported/,
    );
  });
});

/**
 * A node that logs clients in and then dies as a PostgreSQL backend does on postmaster death:
 * with the FATAL it sends when it was waiting for the client (it read nothing), or silently.
 */
function dyingNode(how: 'postmaster-exit' | 'silent'): Promise<FakeNode> {
  return fakeNode((_m, sock) => {
    if (how === 'silent') sock.destroy();
    else
      sock.end(errorResponse('FATAL', '57P01', 'terminating connection due to unexpected postmaster exit'));
  });
}

describe('router proxy when the node dies', { timeout: 60_000 }, () => {
  for (const how of ['postmaster-exit', 'silent'] as const) {
    it(
      how === 'postmaster-exit'
        ? 'sends a transaction the dying node never read to the next leader: the client sees no error'
        : 'fails a transaction whose outcome only the dead node knows, with an error that says so',
      async () => {
        const node = await dyingNode(how);
        const real = targetOf(dbA.url);
        const m = new MetricsRegistry();
        const suspected: number[] = [];
        const p = new TransactionProxy(
          await proxySettings({ poolSize: 2 }),
          pino({ level: 'silent' }),
          m,
          () => suspected.push(Date.now()),
        );
        const pPort = (p as unknown as { s: { port: number } }).s.port;
        await p.start({ ...real, host: '127.0.0.1', port: node.port });
        try {
          const c = new pg.Client({ host: '127.0.0.1', port: pPort, user, database: 'app' });
          c.on('error', () => {});
          await c.connect();
          const q = c
            .query('insert into t (id) values (40) returning current_database() as d')
            .catch((err: Error) => err);
          // the router's answer to the suspicion: another leader
          while (suspected.length === 0) await sleep(5);
          p.repoint(real);
          if (how === 'postmaster-exit') {
            expect(((await q) as pg.QueryResult).rows).toEqual([{ d: dbA.name }]);
            expect(m.render()).toMatch(/brabant_router_transactions_resent_total 1/);
            expect((await c.query('select count(*)::int as n from t where id = 40')).rows[0].n).toBe(1);
            await c.query('delete from t where id = 40');
          } else {
            expect(String(await q)).toMatch(/was lost during the transaction.*outcome is unknown/);
            expect(m.render()).toMatch(/brabant_router_failed_transactions_total\{reason="server_lost"\} 1/);
          }
          await c.end().catch(() => {});
        } finally {
          await p.stop();
          node.close();
        }
      },
    );
  }
});

describe('router proxy when the node breaks the protocol', { timeout: 60_000 }, () => {
  it('a malformed answer while a client’s settings are applied: that client gets 08P01, the proxy serves the others', async () => {
    const zString = (x: string) => Buffer.from(`${x}\0`);
    const node = await fakeNode((m, sock) => {
      if (m.type !== 'Q') return;
      const sql = m.body.toString('utf8');
      // a ParameterStatus whose value is not terminated
      if (sql.startsWith('SET')) sock.write(message('S', Buffer.from('application_name')));
      else sock.write(Buffer.concat([message('C', zString('SELECT 0')), message('Z', Buffer.from('I'))]));
    });
    const p = new TransactionProxy(
      await proxySettings({ poolSize: 1 }),
      pino({ level: 'silent' }),
      new MetricsRegistry(),
      () => {},
    );
    const pPort = (p as unknown as { s: { port: number } }).s.port;
    await p.start({ ...targetOf(dbA.url), host: '127.0.0.1', port: node.port });
    try {
      const connectAs = async (extra: Partial<pg.ClientConfig>) => {
        const c = new pg.Client({ host: '127.0.0.1', port: pPort, user, database: 'app', ...extra });
        c.on('error', () => {});
        await c.connect();
        return c;
      };
      const withSettings = await connectAs({ application_name: 'orders' });
      const err = (await withSettings.query('select 1').catch((e: unknown) => e)) as { code?: string };
      expect(err.code).toBe('08P01');
      expect(String(err)).toMatch(/the node broke the protocol: PROTOCOL_ERROR/);
      const plain = await connectAs({});
      expect((await plain.query('select 1')).rowCount).toBe(0);
      await plain.end();
      expect(p.stats()).toMatchObject({ busy: 0, servers: 1 });
    } finally {
      await p.stop();
      node.close();
    }
  });
});

describe('router proxy under many clients', { timeout: 120_000 }, () => {
  it('keeps each client’s transactions, settings and errors its own while 12 clients share 3 server connections', async () => {
    const { seed, rand } = seeded('proxy random-clients', 'BRABANT_PROXY_SEED');
    const p = new TransactionProxy(
      await proxySettings({ poolSize: 3, waitTimeoutMs: 10_000 }),
      pino({ level: 'silent' }),
      new MetricsRegistry(),
      () => {},
    );
    const pPort = (p as unknown as { s: { port: number } }).s.port;
    await p.start(targetOf(dbA.url));
    await direct(dbA.url, 'create table many (id int primary key, client int)');
    const serverTz = (await direct(dbA.url, 'show timezone')).rows[0].TimeZone as string;
    const present = new Set<number>();
    let nextId = 1;
    const counts = { autocommit: 0, committed: 0, rolledBack: 0, failed: 0, abandoned: 0, settings: 0 };
    const connect = async (w: number) => {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: pPort,
        user,
        database: 'app',
        application_name: `c${w}`,
      });
      c.on('error', () => {});
      await c.connect();
      return c;
    };
    // every transaction must start fresh: in a leaked open transaction, now() is older than the statement
    const fresh = async (c: pg.Client) =>
      (await c.query<{ ok: boolean }>('select now() = statement_timestamp() as ok')).rows[0]!.ok;
    try {
      await Promise.all(
        Array.from({ length: 12 }, async (_, w) => {
          let c = await connect(w);
          let tz = serverTz;
          for (let step = 0; step < 40; step++) {
            const a = nextId++;
            const b = nextId++;
            switch (rand(7)) {
              case 0:
                await c.query('insert into many values ($1, $2)', [a, w]);
                present.add(a);
                counts.autocommit++;
                break;
              case 1:
                await c.query(`insert into many values (${a}, ${w}); insert into many values (${b}, ${w})`);
                present.add(a);
                present.add(b);
                counts.autocommit++;
                break;
              case 2:
                await c.query('begin');
                await c.query('insert into many values ($1, $2)', [a, w]);
                await new Promise((res) => setTimeout(res, rand(5)));
                await c.query('insert into many values ($1, $2)', [b, w]);
                if (rand(2) === 0) {
                  await c.query('commit');
                  present.add(a);
                  present.add(b);
                  counts.committed++;
                } else {
                  await c.query('rollback');
                  counts.rolledBack++;
                }
                break;
              case 3:
                await c.query('begin');
                await c.query('insert into many values ($1, $2)', [a, w]);
                await expect(c.query('select 1 / 0')).rejects.toThrow(/division by zero/);
                await expect(c.query('select 1')).rejects.toThrow(/current transaction is aborted/);
                await c.query('rollback');
                counts.failed++;
                break;
              case 4: {
                // leaves inside a transaction: its insert must not survive
                await c.query('begin');
                await c.query('insert into many values ($1, $2)', [a, w]);
                (
                  c as unknown as { connection: { stream: { destroy: () => void } } }
                ).connection.stream.destroy();
                await c.end().catch(() => {});
                c = await connect(w);
                tz = serverTz;
                counts.abandoned++;
                break;
              }
              case 5: {
                tz = ['Europe/Brussels', 'Asia/Tokyo', 'America/Lima'][rand(3)]!;
                await c.query(`set timezone to '${tz}'`);
                counts.settings++;
                break;
              }
              default: {
                expect(await fresh(c)).toBe(true);
                const s = await c.query<{ tz: string; app: string }>(
                  `select current_setting('TimeZone') as tz, current_setting('application_name') as app`,
                );
                expect(s.rows[0]).toEqual({ tz, app: `c${w}` });
              }
            }
          }
          expect(await fresh(c)).toBe(true);
          await c.end();
        }),
      );
      const rows = (await direct(dbA.url, 'select id from many order by id')).rows.map((x) => x.id as number);
      expect(rows).toEqual([...present].sort((x, y) => x - y));
      expect(p.stats().servers).toBeLessThanOrEqual(3);
      console.log(`seed ${seed}: ${JSON.stringify(counts)}, ${rows.length} rows`);
    } finally {
      await p.stop();
    }
  });
});
