import { connect, createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../processes.ts';
import { Link } from './relay.ts';

let echo: Server | undefined;
let link: Link | undefined;
afterEach(async () => {
  await link?.stop();
  echo?.close();
});

async function setUp(): Promise<number> {
  echo = createServer((s) => s.pipe(s));
  const target = await freePort();
  await new Promise<void>((r) => echo!.listen(target, '127.0.0.1', () => r()));
  const listenPort = await freePort();
  link = new Link([{ name: 'echo', listenPort, targetHost: '127.0.0.1', targetPort: target }]);
  await link.start();
  return listenPort;
}

/** Sends `text` through the relay and resolves with the echo, or with the error that ended it. */
function roundTrip(port: number, text: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(`timeout after ${got.length} bytes`);
    }, timeoutMs);
    s.on('data', (d) => {
      got += d.toString();
      if (got.length >= text.length) {
        clearTimeout(timer);
        s.end();
        resolve(got);
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      resolve(`error ${(err as NodeJS.ErrnoException).code}`);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got || 'closed');
    });
  });
}

describe('the link between regions', () => {
  it('forwards, refuses while cut (reset), and forwards again once healed', async () => {
    const port = await setUp();
    expect(await roundTrip(port, 'hello')).toBe('hello');
    link!.setCut('reset');
    expect(await roundTrip(port, 'hello')).toMatch(/^error ECONNRESET|^closed/);
    link!.heal();
    expect(await roundTrip(port, 'again')).toBe('again');
    expect(link!.status().relays[0]!.forwardedBytes).toBe(20);
  });

  it('a blackhole keeps connections open and forwards nothing', async () => {
    const port = await setUp();
    link!.setCut('blackhole');
    expect(await roundTrip(port, 'lost', 500)).toBe('timeout after 0 bytes');
    link!.heal();
    expect(await roundTrip(port, 'back')).toBe('back');
  });

  it('adds its delay each way', async () => {
    const port = await setUp();
    link!.delayMs = 100;
    const t = Date.now();
    expect(await roundTrip(port, 'slow')).toBe('slow');
    expect(Date.now() - t).toBeGreaterThanOrEqual(200);
  });
});
