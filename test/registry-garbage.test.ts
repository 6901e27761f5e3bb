/**
 * A schema registry that answers garbage (issue 19, hostile input): HTML instead of JSON, JSON
 * without the fields the Confluent API has, bytes that are not UTF-8, 5xx pages, a body cut off
 * mid-way, and a server that trickles its answer a byte at a time. Each is a REGISTRY_ERROR
 * naming what came back (and whether retrying can help), within the client's deadline — never a
 * crash, a hang or a made-up id. The registry here is a loopback HTTP server of the test's own.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SchemaRegistryClient } from '../services/protocol/schema-registry.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let handler: Handler = (_q, res) => res.end();
let server: Server;
let url: string;
const open = new Set<ServerResponse>();

beforeAll(async () => {
  server = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/apis/ccompat/v7`;
});
afterAll(async () => {
  for (const r of open) r.destroy();
  await new Promise((r) => server.close(r));
});

const client = (timeoutMs = 2000) => new SchemaRegistryClient({ url, timeoutMs, retries: 2 });
const SCHEMA = { type: 'record', name: 'r', fields: [{ name: 'a', type: 'int' }] };
const answer =
  (status: number, body: string | Buffer, type = 'application/json'): Handler =>
  (_q, res) => {
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };

describe('a registry answering garbage', { timeout: 30_000 }, () => {
  it('HTML, or bytes that are not UTF-8 JSON, where JSON is expected: not retried, what came back shown', async () => {
    handler = answer(200, '<html><body>Welcome to nginx!</body></html>', 'text/html');
    await expect(client().register('s-value', SCHEMA)).rejects.toMatchObject({
      code: 'REGISTRY_ERROR',
      retriable: false,
      message: expect.stringMatching(
        /answered with a body that is not JSON: <html><body>Welcome to nginx!.*Confluent-compatible API/,
      ),
    });
    handler = answer(200, Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0xc3]));
    await expect(client().schemaById(1)).rejects.toMatchObject({ code: 'REGISTRY_ERROR', retriable: false });
  });

  it('JSON without a valid id or schema is refused, never taken for an id', async () => {
    for (const body of ['{}', '{"id":"7"}', '{"id":-1}', '{"id":1.5}', 'null', '[]', '{"id":null}']) {
      handler = answer(200, body);
      await expect(client().register(`s-${body.length}`, SCHEMA), body).rejects.toMatchObject({
        code: 'REGISTRY_ERROR',
        message: expect.stringMatching(/no schema id/),
      });
    }
    handler = answer(200, '{"schema":5}');
    await expect(client().schemaById(3)).rejects.toMatchObject({
      message: expect.stringMatching(/an object without a schema string: \{"schema":5\}/),
    });
    handler = answer(200, '{"subjects":[]}');
    await expect(client().subjects()).rejects.toMatchObject({
      message: expect.stringMatching(/no list of subject names/),
    });
  });

  it('a 5xx page of garbage is retried, then an error with a short excerpt that says retrying may help', async () => {
    let calls = 0;
    handler = (_q, res) => {
      calls++;
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end(`x${'\u0000garbage'.repeat(1000)}`);
    };
    const err = (await client()
      .schemaById(9)
      .catch((e: unknown) => e)) as { code: string; retriable: boolean; message: string };
    expect(calls).toBe(2);
    expect(err).toMatchObject({ code: 'REGISTRY_ERROR', retriable: true });
    expect(err.message).toMatch(/answered 503: x/);
    expect(err.message.length).toBeLessThan(400);
  });

  it('a body cut off mid-way is a retriable error, not a hang', async () => {
    handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"id":');
      setTimeout(() => res.destroy(), 20);
    };
    await expect(client().register('cut-value', SCHEMA)).rejects.toMatchObject({
      code: 'REGISTRY_ERROR',
      retriable: true,
      message: expect.stringMatching(/unreachable/),
    });
  });

  it('an answer trickled a byte at a time ends at the client’s deadline', async () => {
    handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const timer = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(timer));
    };
    const t0 = Date.now();
    await expect(client(500).schemaById(11)).rejects.toMatchObject({
      code: 'REGISTRY_ERROR',
      message: expect.stringMatching(/no answer within 500 ms/),
    });
    // two attempts of 500 ms and the pause between them, not for ever
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
