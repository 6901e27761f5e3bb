/**
 * A stand-in for a PostgreSQL node, for what a real one does only when it breaks: it logs every
 * connection in (trust, the given parameters, a backend key), then hands each message the
 * router sends to `answer`, which writes whatever the test wants on the socket.
 */
import { createServer, type Socket } from 'node:net';
import {
  authenticationOk,
  backendKeyData,
  parameterStatus,
  readyForQuery,
} from '../../services/router/wire.ts';
import type { Received } from './raw-client.ts';

export interface FakeNode {
  port: number;
  close: () => void;
}

/** As a node announces them; application_name empty, as for clients without settings of their own. */
const ANNOUNCED = { client_encoding: 'UTF8', TimeZone: 'UTC', application_name: '' };

export async function fakeNode(
  answer: (m: Received, socket: Socket) => void,
  announced: Record<string, string> = ANNOUNCED,
): Promise<FakeNode> {
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let loggedIn = false;
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!loggedIn) {
        // the startup message: Int32 length, then its body
        if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return;
        buf = buf.subarray(buf.readInt32BE(0));
        loggedIn = true;
        sock.write(
          Buffer.concat([
            authenticationOk(),
            ...Object.entries(announced).map(([k, v]) => parameterStatus(k, v)),
            backendKeyData(1, 2),
            readyForQuery('I'),
          ]),
        );
      }
      while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
        const len = buf.readInt32BE(1);
        const m = { type: String.fromCharCode(buf[0]!), body: buf.subarray(5, 1 + len) };
        buf = buf.subarray(1 + len);
        if (m.type === 'X') sock.end();
        else if (!sock.destroyed) answer(m, sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
