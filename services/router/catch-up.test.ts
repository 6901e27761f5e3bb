import { describe, expect, it } from 'vitest';
import { type CatchUpClient, CatchUpLinks, type ConnectFn } from './catch-up.ts';

const FROM = { id: 'vl-1', url: 'postgres://brabant:s3cret@127.0.0.1:5501/app' };
const TO = { id: 'wa-1', url: 'postgres://brabant:s3cret@127.0.0.1:5502/app' };

/** Fake nodes: connection attempts that fail while `refusals` of that port last, a mark, a progress. */
function fakeNodes(o: { refusals?: Record<string, number>; progress: () => string | null }) {
  const refusals = { ...o.refusals };
  const attempts: string[] = [];
  const failNextQuery = new Set<string>();
  const connect: ConnectFn = (url) => {
    const port = new URL(url).port;
    attempts.push(port);
    const c: CatchUpClient = {
      async connect() {
        if ((refusals[port] ?? 0) > 0) {
          refusals[port]! -= 1;
          throw new Error('timeout expired');
        }
      },
      async query<R>(text: string) {
        if (failNextQuery.delete(port)) throw new Error('Connection terminated unexpectedly');
        if (text.includes('pg_logical_emit_message')) return { rows: [{ lsn: '0/1000' } as R] };
        return { rows: [{ p: o.progress() } as R] };
      },
      async end() {},
      on() {},
    };
    return c;
  };
  return { connect, attempts, failNextQuery };
}

describe('a switchover catching up', () => {
  it('opens each node once for all its waits, trying a slow node again until it answers', async () => {
    const nodes = fakeNodes({ refusals: { '5502': 2 }, progress: () => '0/1000' });
    const links = new CatchUpLinks(FROM, TO, nodes.connect);
    await links.waitCaughtUp(5000);
    await links.waitCaughtUp(5000);
    await links.close();
    expect(nodes.attempts).toEqual(['5501', '5502', '5502', '5502']);
  });

  it('waits until the target applied past the mark', async () => {
    let reads = 0;
    const nodes = fakeNodes({ progress: () => (++reads < 4 ? '0/FFF' : '0/1000') });
    const links = new CatchUpLinks(FROM, TO, nodes.connect);
    await links.waitCaughtUp(5000);
    expect(reads).toBe(4);
  });

  it('connects again after a query on a connection failed', async () => {
    const nodes = fakeNodes({ progress: () => '0/2000' });
    const links = new CatchUpLinks(FROM, TO, nodes.connect);
    await links.waitCaughtUp(5000);
    nodes.failNextQuery.add('5502');
    await expect(links.waitCaughtUp(5000)).rejects.toThrow(/terminated/);
    await links.waitCaughtUp(5000);
    expect(nodes.attempts).toEqual(['5501', '5502', '5502']);
  });

  it('names the node it cannot reach by its deadline, without the password', async () => {
    const nodes = fakeNodes({ refusals: { '5502': 1000 }, progress: () => null });
    const links = new CatchUpLinks(FROM, TO, nodes.connect);
    const err = await links.waitCaughtUp(600).catch((e: unknown) => e as Error & { code?: string });
    expect(err).toMatchObject({ code: 'SOURCE_UNAVAILABLE' });
    expect(err?.message).toMatch(/cannot connect to the target wa-1 .*127\.0\.0\.1:5502.*timeout expired/);
    expect(err?.message).not.toMatch(/s3cret/);
    expect(nodes.attempts.filter((p) => p === '5502').length).toBeGreaterThan(1);
  });

  it('says what the target applied when it does not reach the mark in time', async () => {
    const nodes = fakeNodes({ progress: () => '0/800' });
    const links = new CatchUpLinks(FROM, TO, nodes.connect);
    await expect(links.waitCaughtUp(100)).rejects.toMatchObject({
      code: 'TIMEOUT',
      message: expect.stringMatching(
        /wa-1 has not applied everything vl-1 committed .*applied 0\/800, needed 0\/1000/,
      ),
    });
  });
});
