import { describe, expect, it } from 'vitest';
import { ScramLogin } from './client-auth.ts';
import { clientFinal, clientFirst, verifyServerFinal } from './scram.ts';
import { makeVerifier } from './scram-server.ts';
import { message, parseAuthRequest } from './wire.ts';

const verifier = makeVerifier('pencil', Buffer.from('0123456789abcdef'), 4096);
const secret = Buffer.from('mock secret');
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
/** SASLInitialResponse's body: mechanism, length of the data, data. */
const initial = (mechanism: string, data: string) =>
  Buffer.concat([Buffer.from(`${mechanism}\0`), int32(Buffer.byteLength(data)), Buffer.from(data)]);
const body = (m: Buffer) => m.subarray(5);
const protocolError = expect.objectContaining({ code: 'PROTOCOL_ERROR' });

/** A client's side of the conversation, with `password`, through the router's ScramLogin. */
function converse(login: ScramLogin, password: string) {
  expect(parseAuthRequest(body(login.start()))).toEqual({ kind: 'sasl', mechanisms: ['SCRAM-SHA-256'] });
  const first = clientFirst('clientNonce');
  const cont = login.receive('p', initial('SCRAM-SHA-256', first.message));
  if (cont.kind !== 'send') throw new Error(`expected server-first, got ${cont.kind}`);
  const serverFirst = parseAuthRequest(body(cont.bytes));
  if (serverFirst.kind !== 'sasl-continue') throw new Error('expected SASL continue');
  const final = clientFinal(first.state, serverFirst.data.toString(), { password });
  return { step: login.receive('p', Buffer.from(final.message)), expected: final.expectedServerSignature };
}

describe('a client’s SCRAM login to the router', () => {
  it('the right password: proven, with server-final the client checks and the keys for the node', () => {
    const { step, expected } = converse(
      new ScramLogin('app', { kind: 'found', verifier }, 'serverNonce', secret),
      'pencil',
    );
    if (step.kind !== 'proven') throw new Error(`expected proven, got ${step.kind}`);
    const final = parseAuthRequest(body(step.bytes));
    expect(final.kind).toBe('sasl-final');
    expect(() =>
      verifyServerFinal(final.kind === 'sasl-final' ? final.data.toString() : '', expected),
    ).not.toThrow();
    expect(step.keys).toMatchObject({ salt: verifier.salt, iterations: 4096, serverKey: verifier.serverKey });
  });

  it('a wrong password, or a role without a verifier: refused at the end, the reason for the log only', () => {
    const wrong = converse(new ScramLogin('app', { kind: 'found', verifier }, 'n', secret), 'pen');
    expect(wrong.step).toEqual({ kind: 'refused', why: 'wrong password' });
    const unknown = converse(
      new ScramLogin('ghost', { kind: 'missing', why: 'no role "ghost"' }, 'n', secret),
      'pencil',
    );
    expect(unknown.step).toEqual({ kind: 'refused', why: 'no role "ghost"' });
  });

  it('messages that do not belong in the conversation are a PROTOCOL_ERROR', () => {
    const login = () => new ScramLogin('app', { kind: 'found', verifier }, 'n', secret);
    expect(() => login().receive('Q', Buffer.from('select 1\0'))).toThrow(protocolError);
    expect(() =>
      login().receive('p', initial('SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=,r=x')),
    ).toThrow(expect.objectContaining({ message: expect.stringMatching(/offers SCRAM-SHA-256 only/) }));
    expect(() => login().receive('p', Buffer.from('pencil\0'))).toThrow(protocolError); // a cleartext password
    expect(() =>
      login().receive(
        'p',
        Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), int32(100), Buffer.from('n,,n=,r=x')]),
      ),
    ).toThrow(protocolError);
    expect(() => login().receive('p', message('p', Buffer.alloc(0)))).toThrow(protocolError);
  });
});
