import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ServerLogin, Target } from './server-connection.ts';
import { type PooledServer, ServerPool } from './server-pool.ts';

const target: Target = { host: '127.0.0.1', port: 5432, dbname: 'app', user: 'app' };

/** A pool whose logins succeed at once, on sockets that go nowhere. */
function pool(poolSize = 2) {
  const closed: string[] = [];
  const p = new ServerPool<string>(
    { poolSize, connectTimeoutMs: 1000 },
    () => 0,
    { data: () => {}, closed: (_s, was) => closed.push(was.kind) },
    async (): Promise<ServerLogin> => ({
      socket: new Duplex({ read() {}, write: (_c, _e, cb) => cb() }) as unknown as Socket,
      params: new Map(),
      pid: 1,
      secret: 2,
    }),
  );
  p.repoint(target);
  return { p, closed };
}

async function opened(p: ServerPool<string>): Promise<PooledServer<string>> {
  const o = await p.open();
  if (o.kind !== 'opened') throw new Error('not opened');
  return o.server;
}

describe('the server pool', () => {
  it('an idle connection that is going away is out of the pool at once, before its socket closes', async () => {
    const { p, closed } = pool();
    const s = await opened(p);
    p.giveBack(s);
    p.lose(s);
    // the close event comes later; meanwhile no client may be given it
    expect(p.take()).toBeUndefined();
    expect(s.state.kind).toBe('lost');
    await new Promise((r) => setImmediate(r));
    expect(closed).toEqual(['lost']);
    expect(p.size).toBe(0);
  });

  it('gives back only connections of the current target; a lost one is not pooled again', async () => {
    const { p } = pool();
    const a = await opened(p);
    const b = await opened(p);
    p.repoint({ ...target, host: '10.0.0.2' });
    p.giveBack(a);
    expect(a.state.kind).toBe('closing');
    p.lose(b);
    p.giveBack(b);
    expect(b.state.kind).toBe('lost');
    expect(p.take()).toBeUndefined();
  });
});
