/**
 * One HTTP(S) request to a schema registry (I/O): node's http/https with the registry's TLS (a CA
 * to check its certificate against, and a client certificate for its mutual TLS), a deadline for
 * the whole answer, and the body read whole (up to MAX_ANSWER_BYTES). Global fetch cannot be given a CA or a client certificate per request.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ClientTls } from '../runtime/security.ts';

export interface HttpAnswer {
  status: number;
  contentType: string;
  text: string;
}

/** Larger answers are cut off there: no registry answer Brabant reads is anywhere near it. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export function registryRequest(
  url: string,
  opts: {
    method: string;
    headers: Record<string, string>;
    body?: string;
    timeoutMs: number;
    tls?: ClientTls;
  },
): Promise<HttpAnswer> {
  const u = new URL(url);
  const https = u.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      u,
      {
        method: opts.method,
        headers: {
          ...opts.headers,
          ...(opts.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(opts.body)) }),
        },
        timeout: opts.timeoutMs,
        ...(https && opts.tls ? opts.tls : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) {
            req.destroy(new Error(`the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(deadline);
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type'] ?? ''),
            text: Buffer.concat(chunks).toString('utf8'),
          });
        });
        res.on('error', reject);
      },
    );
    // the whole answer within the deadline: the socket's idle timeout alone never ends an
    // answer trickled a byte at a time
    const late = () => req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`));
    const deadline = setTimeout(late, opts.timeoutMs);
    req.on('timeout', late);
    req.on('error', (err) => {
      clearTimeout(deadline);
      reject(err);
    });
    req.on('close', () => clearTimeout(deadline));
    req.end(opts.body);
  });
}
