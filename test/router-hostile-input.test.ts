/**
 * The router's proxy fed malformed and oversized protocol messages at every state of a client
 * connection: startup, TLS negotiation, authentication, idle, in a transaction, in COPY FROM
 * STDIN, and while its settings are set up. Each bad client gets a protocol error (08P01) or is
 * closed; meanwhile a bystander's transactions go on without an error, the leader is never
 * suspected, and afterwards no server connection is left in a wrong state (none busy, none in a
 * transaction on the node, the pool serves new clients). A declared length beyond the limit is
 * refused at its header, before its body is sent; what a waiting client sends is held up to a
 * bound, not without end.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientFirst } from '../services/router/scram.ts';
import { formatVerifier, makeVerifier } from '../services/router/scram-server.ts';
import { targetOf } from '../services/router/server-connection.ts';
import {
  message,
  query,
  saslInitialResponse,
  saslResponse,
  startupMessage,
} from '../services/router/wire.ts';
import { makeCertificates, type TestCertificates } from './support/certificates.ts';
import { fakeNode } from './support/fake-node.ts';
import { type StartedProxy, startProxy } from './support/proxy.ts';
import { seeded } from './support/random.ts';
import { RawClient } from './support/raw-client.ts';
import { createDatabase, region } from './support/stack.ts';

const MAX_MESSAGE = 1024 * 1024;
const PASSWORD = 'hostile test password';
const dir = mkdtempSync(join(tmpdir(), 'brabant-hostile-'));
let db: Awaited<ReturnType<typeof createDatabase>>;
let certs: TestCertificates;
let user: string;
/** Trust, TLS offered: the states after login. */
let trusting: StartedProxy;
/** SCRAM against a user list: the authentication state. */
let scram: StartedProxy;
const { rand } = seeded('hostile input', 'BRABANT_HOSTILE_SEED');

const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
/** A message header: type byte and the length it declares (no body follows unless given). */
const header = (type: string, length: number) => Buffer.concat([Buffer.from(type, 'latin1'), int32(length)]);
const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rand(256)));
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** What became of a bad client: the SQLSTATE of the error it got (if any), and whether its connection ended. */
interface Outcome {
  code: string | undefined;
  closed: boolean;
}

async function outcome(c: RawClient, timeoutMs = 4000): Promise<Outcome> {
  const error = c.error(timeoutMs).then(
    (f) => f.get('C'),
    () => undefined,
  );
  const closed = c.closed.then(() => true);
  const first = await Promise.race([error, closed, sleep(timeoutMs).then(() => 'timeout' as const)]);
  if (first === 'timeout') return { code: undefined, closed: false };
  const code = await Promise.race([error, sleep(50).then(() => undefined)]);
  // a FATAL ends the connection: give it the grace the router gives
  const ended = await Promise.race([closed, sleep(2000).then(() => false)]);
  return { code: typeof code === 'string' ? code : undefined, closed: ended };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** A client logged in to the trusting proxy (startup, ReadyForQuery). */
const loggedIn = (extra: Record<string, string> = {}) =>
  RawClient.login(trusting.port, { user, database: 'app', ...extra });

/** A client of the SCRAM proxy that got AuthenticationSASL. */
async function authenticating(): Promise<RawClient> {
  const c = await RawClient.open(scram.port);
  c.write(startupMessage({ user, database: 'app' }));
  await c.until('R');
  return c;
}

/** A client inside a transaction that inserted row `id` (which must never become visible). */
async function inTransaction(id: number): Promise<RawClient> {
  const c = await loggedIn();
  c.write(query(`begin; insert into t values (${id})`));
  await c.until('Z');
  return c;
}

/** A client in COPY FROM STDIN that sent one row (`id`, never to become visible). */
async function inCopy(id: number): Promise<RawClient> {
  const c = await loggedIn();
  c.write(query('copy t (id) from stdin'));
  await c.until('G');
  c.write(message('d', Buffer.from(`${id}\n`)));
  return c;
}

/** A half message, then the client is gone: nothing to tell it; its server connection is closed. */
async function halfThenGone(c: RawClient): Promise<Outcome> {
  c.write(query(`select '${'x'.repeat(100)}'`).subarray(0, 40));
  await sleep(50);
  c.destroy();
  await c.closed;
  return { code: undefined, closed: true };
}

interface Case {
  state: string;
  what: string;
  /** Sends the bad input; returns what became of the client (which is then gone). */
  run: () => Promise<Outcome>;
  /** The error the client must get; by default 08P01. */
  code?: string;
  /** Only closed, without an error to read (a TLS handshake that failed, a client that left). */
  mayOnlyClose?: boolean;
  /** The node answered the bad message itself (an ERROR): the session could go on. */
  staysOpen?: boolean;
  /** Random bytes: whatever they parse as, the proxy must survive them (checked afterwards). */
  fuzz?: boolean;
}

/** Sends `bytes` and reads what became of the client; then it is gone in any case. */
const send = async (c: Promise<RawClient>, bytes: Buffer, timeoutMs?: number) => {
  const client = await c;
  client.write(bytes);
  const o = await outcome(client, timeoutMs);
  client.destroy();
  return o;
};

/** Ten rounds of random bytes, each on a new client in `state`. */
function fuzz(state: string, client: (round: number) => Promise<RawClient>): Case[] {
  return Array.from({ length: 10 }, (_, round) => ({
    state,
    what: `random bytes, round ${round + 1}`,
    fuzz: true,
    run: () => send(client(round), randomBytes(1 + rand(400)), 600),
  }));
}

function cases(): Case[] {
  const open = () => RawClient.open(trusting.port);
  const oversized = header('Q', 0x7fffffff);
  return [
    // -- startup
    {
      state: 'startup',
      what: 'a length below 8',
      run: () => send(open(), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0])),
    },
    {
      state: 'startup',
      what: 'a declared length of 2 GiB',
      run: () => send(open(), Buffer.from([0x7f, 0xff, 0xff, 0xff])),
    },
    {
      state: 'startup',
      what: 'protocol 2.0',
      run: () => send(open(), Buffer.from([0, 0, 0, 8, 0, 2, 0, 0])),
    },
    {
      state: 'startup',
      what: 'parameters not terminated',
      run: () => {
        const body = Buffer.concat([int32(196608), Buffer.from('user\0x\0')]);
        return send(open(), Buffer.concat([int32(body.length + 4), body]));
      },
    },
    {
      state: 'startup',
      what: 'a cancel request of 12 bytes',
      run: () => send(open(), Buffer.from([0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1])),
    },
    ...fuzz('startup', open),
    {
      state: 'startup',
      what: 'a startup message cut short, then nothing (the login deadline)',
      code: '57014',
      run: () => send(open(), startupMessage({ user, database: 'app' }).subarray(0, 9)),
    },
    // -- TLS negotiation
    {
      state: 'TLS negotiation',
      what: 'garbage instead of a TLS ClientHello',
      mayOnlyClose: true,
      run: async () => {
        const c = await open();
        expect(await c.sslRequest()).toBe('S');
        c.write(randomBytes(200));
        return outcome(c);
      },
    },
    ...fuzz('TLS negotiation', async () => {
      const c = await open();
      expect(await c.sslRequest()).toBe('S');
      return c;
    }),
    {
      state: 'TLS negotiation',
      what: 'an SSL request inside TLS',
      run: async () => {
        const c = await open();
        expect(await c.sslRequest()).toBe('S');
        await c.startTls({ ca: readFileSync(certs.ca), servername: 'localhost' });
        c.write(SSL_REQUEST);
        return outcome(c);
      },
    },
    // -- authentication (SCRAM)
    {
      state: 'authentication',
      what: 'a Query instead of a SASL response',
      run: () => send(authenticating(), query('select 1')),
    },
    {
      state: 'authentication',
      what: 'another SASL mechanism',
      run: () => send(authenticating(), saslInitialResponse('SCRAM-SHA-1', Buffer.from('n,,n=,r=abc'))),
    },
    {
      state: 'authentication',
      what: 'a SASLInitialResponse whose data length lies',
      run: () =>
        send(
          authenticating(),
          message('p', Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), int32(500), Buffer.from('n,,n=,r=x')])),
        ),
    },
    {
      state: 'authentication',
      what: 'a client-first message of garbage',
      run: () => send(authenticating(), saslInitialResponse('SCRAM-SHA-256', randomBytes(40))),
    },
    {
      state: 'authentication',
      what: 'a cleartext password',
      run: () => send(authenticating(), message('p', Buffer.from(`${PASSWORD}\0`))),
    },
    {
      state: 'authentication',
      what: 'a message declaring 100 MB',
      run: () => send(authenticating(), header('p', 100_000_000)),
    },
    { state: 'authentication', what: 'a length below 4', run: () => send(authenticating(), header('p', 1)) },
    {
      state: 'authentication',
      what: 'a client-final for another nonce',
      run: async () => {
        const c = await authenticating();
        c.write(saslInitialResponse('SCRAM-SHA-256', Buffer.from(clientFirst('abcdefgh').message)));
        await c.until('R');
        c.write(saslResponse(Buffer.from(`c=biws,r=other,p=${Buffer.alloc(32).toString('base64')}`)));
        return outcome(c);
      },
    },
    ...fuzz('authentication', () => authenticating()),
    // -- idle (logged in, no transaction)
    { state: 'idle', what: 'a length below 4', run: () => send(loggedIn(), header('Q', 2)) },
    { state: 'idle', what: 'a declared length of 2 GiB', run: () => send(loggedIn(), oversized) },
    {
      state: 'idle',
      what: 'a declared length one over BRABANT_ROUTER_MAX_MESSAGE_BYTES',
      run: () => send(loggedIn(), header('Q', MAX_MESSAGE + 1)),
    },
    ...fuzz('idle', () => loggedIn()),
    // (the node reads these and refuses them itself)
    { state: 'idle', what: 'an unknown message type', run: () => send(loggedIn(), header('a', 4)) },
    {
      state: 'idle',
      what: 'a Query whose string is not terminated',
      staysOpen: true,
      run: () => send(loggedIn(), message('Q', Buffer.from('select 1'))),
    },
    {
      state: 'idle',
      what: 'half a message, then gone',
      mayOnlyClose: true,
      run: async () => halfThenGone(await loggedIn()),
    },
    // -- in a transaction (each has inserted a row that must not survive)
    {
      state: 'in a transaction',
      what: 'a length below 4',
      run: () => send(inTransaction(1001), header('P', 3)),
    },
    {
      state: 'in a transaction',
      what: 'a declared length of 2 GiB',
      run: () => send(inTransaction(1002), oversized),
    },
    {
      state: 'in a transaction',
      what: 'an unknown message type',
      run: () => send(inTransaction(1003), header('a', 4)),
    },
    ...fuzz('in a transaction', (round) => inTransaction(1100 + round)),
    {
      state: 'in a transaction',
      what: 'half a message, then gone',
      mayOnlyClose: true,
      run: async () => halfThenGone(await inTransaction(1005)),
    },
    // -- in COPY FROM STDIN (each has sent a row that must not survive)
    {
      state: 'in COPY',
      what: 'copy data with a length below 4',
      run: () => send(inCopy(2001), header('d', 0)),
    },
    {
      state: 'in COPY',
      what: 'copy data declaring 2 GiB',
      run: () => send(inCopy(2002), header('d', 0x7fffffff)),
    },
    { state: 'in COPY', what: 'a Query before CopyDone', run: () => send(inCopy(2003), query('select 1')) },
    ...fuzz('in COPY', (round) => inCopy(2100 + round)),
    {
      state: 'in COPY',
      what: 'half a message, then gone',
      mayOnlyClose: true,
      run: async () => halfThenGone(await inCopy(2005)),
    },
    {
      state: 'in COPY',
      what: 'a Query pipelined behind the COPY, before its CopyInResponse',
      run: () => send(loggedIn(), Buffer.concat([query('copy t (id) from stdin'), query('select 1')])),
    },
  ];
}

function expectHandled(c: Case, o: Outcome): void {
  const where = `${c.state}: ${c.what} → ${JSON.stringify(o)}`;
  // (random bytes may be half a message the node still waits for, or SQL it answers with an error)
  if (c.fuzz) return;
  if (c.staysOpen) {
    expect(o.code, where).toBe('08P01');
    return;
  }
  expect(o.closed, where).toBe(true);
  if (c.mayOnlyClose) expect([undefined, '08P01'], where).toContain(o.code);
  else expect(o.code, where).toBe(c.code ?? '08P01');
}

/** The proxy's server connections on the node that are not idle (none must be, once bad clients are gone). */
async function busyBackends(): Promise<{ state: string; query: string }[]> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    return (
      await c.query(
        `select state, query from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()
           and backend_type = 'client backend' and state <> 'idle'`,
        [db.name],
      )
    ).rows;
  } finally {
    await c.end();
  }
}

/** A client that runs a transaction every few milliseconds until stopped, counting what failed. */
function bystander(port: number, password?: string) {
  const state = { done: 0, failed: [] as string[], stop: false };
  const running = (async () => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port,
      user,
      database: 'app',
      ...(password ? { password } : {}),
    });
    c.on('error', () => {});
    await c.connect();
    while (!state.stop) {
      try {
        await c.query('begin');
        await c.query('select count(*) from t');
        await c.query('commit');
        state.done++;
      } catch (err) {
        state.failed.push(String(err));
      }
      await sleep(5);
    }
    await c.end();
  })();
  const stop = async () => {
    state.stop = true;
    await running;
  };
  return { state, stop };
}

beforeAll(async () => {
  db = await createDatabase(region('vlaanderen').nodes[0]!, 'hostile');
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query('create table t (id int primary key)');
  await admin.end();
  const target = targetOf(db.url);
  user = target.user;
  certs = makeCertificates(dir);
  trusting = await startProxy(target, {
    poolSize: 2,
    access: {
      tls: 'allow',
      tlsCert: certs.cert,
      tlsKey: certs.key,
      maxMessageBytes: MAX_MESSAGE,
      startupTimeoutMs: 1500,
    },
  });
  const users = join(dir, 'users.txt');
  writeFileSync(
    users,
    `"${user}" "${formatVerifier(makeVerifier(PASSWORD, Buffer.from('hostile salt'), 4096))}"\n`,
  );
  scram = await startProxy(target, {
    poolSize: 2,
    access: { auth: 'scram', authFile: users, startupTimeoutMs: 1500 },
  });
});

afterAll(async () => {
  await trusting?.stop();
  await scram?.stop();
  await db?.drop();
});

describe('router proxy under hostile input', { timeout: 120_000 }, () => {
  it('every bad client gets 08P01 or is closed; a bystander is served throughout; the pool is whole afterwards', async () => {
    const others = [bystander(trusting.port), bystander(scram.port, PASSWORD)];
    const all = cases();
    for (const c of all) expectHandled(c, await c.run());
    await sleep(200);
    for (const b of others) await b.stop();
    for (const b of others) {
      expect(b.state.failed).toEqual([]);
      expect(b.state.done).toBeGreaterThan(all.length);
    }
    // nothing a bad client began survives, no server connection is left busy or in a transaction
    for (const p of [trusting, scram]) {
      // (a login stuck half-way ends at its deadline, or once the router's grace after a FATAL is over)
      await waitUntil(() => p.proxy.stats().loggingIn === 0, 3000);
      expect(p.proxy.suspectedSince).toBeUndefined();
      expect(p.proxy.stats()).toMatchObject({
        clients: 0,
        loggingIn: 0,
        waiting: 0,
        busy: 0,
        pendingBytes: 0,
      });
      expect(p.proxy.stats().servers).toBeLessThanOrEqual(2);
    }
    expect(await busyBackends()).toEqual([]);
    // the pool serves new clients: 4 at once, 5 transactions each, on each proxy
    for (const [p, password] of [
      [trusting, undefined],
      [scram, PASSWORD],
    ] as const) {
      await Promise.all(
        Array.from({ length: 4 }, async (_, i) => {
          const c = new pg.Client({
            host: '127.0.0.1',
            port: p.port,
            user,
            database: 'app',
            ...(password ? { password } : {}),
          });
          await c.connect();
          for (let j = 0; j < 5; j++) {
            await c.query('begin');
            await c.query('insert into t values ($1)', [(p === scram ? 20_000 : 10_000) + i * 10 + j]);
            await c.query('commit');
          }
          await c.end();
        }),
      );
    }
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const ids = (await c.query('select id from t order by id')).rows.map((r) => r.id as number);
    await c.end();
    expect(ids.filter((id) => id < 10_000)).toEqual([]);
    expect(ids).toHaveLength(40);
  });

  it('a declared length beyond the limit is refused at its header, before its body is sent', async () => {
    const c = await RawClient.login(trusting.port, { user, database: 'app' });
    const t0 = Date.now();
    c.write(header('Q', 0x40000000)); // 1 GiB declared, no body
    const fields = await c.error(2000);
    expect(fields.get('C')).toBe('08P01');
    expect(fields.get('M')).toMatch(
      /declares 1073741824 bytes, more than the router accepts \(1048576, BRABANT_ROUTER_MAX_MESSAGE_BYTES\)/,
    );
    expect(Date.now() - t0).toBeLessThan(1000);
    await c.closed;
  });

  it('a client that streams while it waits is held to a bound: the router stops reading it, then sends it all', async () => {
    const p = await startProxy(targetOf(db.url), { poolSize: 1, access: { maxMessageBytes: MAX_MESSAGE } });
    try {
      const c = await RawClient.login(p.port, { user, database: 'app' });
      p.proxy.hold();
      // 6 queries of 700 kB each, sent while no server connection may be had
      const big = query(`select length('${'x'.repeat(700_000)}') as n`);
      for (let i = 0; i < 6; i++) c.write(big);
      let most = 0;
      for (let i = 0; i < 20; i++) {
        most = Math.max(most, p.proxy.stats().pendingBytes);
        await sleep(20);
      }
      // the limit is 1 MiB; one read chunk past it at most
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(1024 * 1024 + 128 * 1024);
      p.proxy.release();
      for (let i = 0; i < 6; i++) await c.until('Z', 10_000);
      expect(p.proxy.stats()).toMatchObject({ pendingBytes: 0, busy: 0 });
      c.destroy();
    } finally {
      await p.stop();
    }
  });

  it('bad bytes while the client’s settings are set up: 08P01, the server connection closed, the next client served', async () => {
    // a node whose answers to the router's SET statements take 300 ms: the client's bytes come meanwhile
    const node = await fakeNode((m, sock) => {
      if (m.type !== 'Q') return;
      const done = Buffer.concat([message('C', Buffer.from('SET\0')), message('Z', Buffer.from('I'))]);
      if (m.body.toString().startsWith('SET')) setTimeout(() => sock.write(done), 300);
      else sock.write(done);
    });
    const p = await startProxy({ ...targetOf(db.url), host: '127.0.0.1', port: node.port }, { poolSize: 1 });
    try {
      const c = await RawClient.login(p.port, { user, database: 'app', application_name: 'hostile' });
      c.write(query('select 1'));
      await sleep(100);
      expect(p.proxy.stats().busy).toBe(1); // its settings are being set up
      c.write(header('Q', 1));
      expect(await outcome(c)).toEqual({ code: '08P01', closed: true });
      // its server connection was closed, not given to the next client
      await waitUntil(() => p.proxy.stats().servers === 0);
      const next = await RawClient.login(p.port, { user, database: 'app' });
      next.write(query('select 1'));
      await next.until('Z');
      expect(p.proxy.suspectedSince).toBeUndefined();
      next.destroy();
    } finally {
      await p.stop();
      node.close();
    }
  });
});
