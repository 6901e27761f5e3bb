import { describe, expect, it } from 'vitest';
import { clientFinal, clientFirst, verifyServerFinal } from './scram.ts';
import {
  formatVerifier,
  makeVerifier,
  mockVerifier,
  parseVerifier,
  serverFinal,
  serverFirst,
} from './scram-server.ts';

// RFC 7677 section 3: user "user", password "pencil".
const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
const rfc = {
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const pencil = makeVerifier('pencil', salt, 4096);
const protocolError = expect.objectContaining({ name: 'BrabantError', code: 'PROTOCOL_ERROR' });

describe('SCRAM-SHA-256 server', () => {
  it('reproduces the RFC 7677 exchange', () => {
    const first = serverFirst(rfc.clientFirst, pencil, rfc.serverNonce);
    expect(first.message).toBe(rfc.serverFirst);
    const outcome = serverFinal(first.exchange, rfc.clientFinal);
    expect(outcome).toMatchObject({ kind: 'proven', message: rfc.serverFinal });
  });

  it('refuses a wrong proof, and a role without a verifier whatever it proves', () => {
    const wrong = makeVerifier('pen', salt, 4096);
    expect(
      serverFinal(serverFirst(rfc.clientFirst, wrong, rfc.serverNonce).exchange, rfc.clientFinal),
    ).toEqual({
      kind: 'refused',
      reason: 'wrong password',
    });
    // the mock exchange looks like any other: a stable salt per role, the default iterations
    const secret = Buffer.from('router secret');
    expect(mockVerifier('ghost', secret).salt).toEqual(mockVerifier('ghost', secret).salt);
    expect(mockVerifier('ghost', secret).salt).not.toEqual(mockVerifier('other', secret).salt);
    const mock = serverFirst(rfc.clientFirst, mockVerifier('ghost', secret), rfc.serverNonce, true);
    expect(mock.message).toMatch(/^r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj\)hNlF\$k0,s=[^,]+,i=4096$/);
    expect(serverFinal(mock.exchange, rfc.clientFinal).kind).toBe('refused');
  });

  it('gives back the ClientKey: the router proves the same password to the node without knowing it', () => {
    const first = serverFirst(rfc.clientFirst, pencil, rfc.serverNonce);
    const outcome = serverFinal(first.exchange, rfc.clientFinal);
    if (outcome.kind !== 'proven') throw new Error('not proven');
    // the router, as a client of a node holding the same verifier
    const toNode = clientFirst('anotherClientNonce');
    const nodeFirst = serverFirst(toNode.message, pencil, 'nodeNonce');
    const keys = { salt, iterations: 4096, clientKey: outcome.clientKey, serverKey: pencil.serverKey };
    const final = clientFinal(toNode.state, nodeFirst.message, { keys });
    const atNode = serverFinal(nodeFirst.exchange, final.message);
    expect(atNode.kind).toBe('proven');
    expect(() =>
      verifyServerFinal(atNode.kind === 'proven' ? atNode.message : '', final.expectedServerSignature),
    ).not.toThrow();
    // a node with another verifier for the role (another salt): said before anything is sent
    const otherNode = serverFirst(
      toNode.message,
      makeVerifier('pencil', Buffer.from('other salt'), 4096),
      'n',
    );
    expect(() => clientFinal(toNode.state, otherNode.message, { keys })).toThrow(
      /same verifier on every node/,
    );
  });

  it('reads and writes verifiers as pg_authid.rolpassword holds them, and nothing else', () => {
    const text = formatVerifier(pencil);
    expect(text).toMatch(/^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$[^:]+:[^:]+$/);
    expect(parseVerifier(text)).toEqual(pencil);
    for (const other of [
      'md5a3556571e93b0d20722ba62be61e8c2d',
      'pencil',
      'SCRAM-SHA-256$0:AA==$AA==:AA==',
      '',
    ])
      expect(parseVerifier(other)).toBeUndefined();
  });

  it('malformed client messages are a PROTOCOL_ERROR, never a crash', () => {
    for (const bad of [
      '',
      'n',
      'n,',
      'x,,n=,r=abc',
      'p=tls-server-end-point,,n=,r=abc',
      'n,a=admin,n=,r=abc',
      'n,,m=ext,n=,r=abc',
      'n,,n=,',
      'n,,n=,r=a,b',
      'n,,r=abc',
    ])
      expect(() => serverFirst(bad, pencil, rfc.serverNonce), bad).toThrow(protocolError);
    const { exchange } = serverFirst(rfc.clientFirst, pencil, rfc.serverNonce);
    const nonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    for (const bad of [
      '',
      'c=biws,r=x',
      `c=eSws,r=${nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`,
      'c=biws,r=other,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
      `c=biws,r=${nonce},p=AAAA`,
      `r=${nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`,
    ])
      expect(() => serverFinal(exchange, bad), bad).toThrow(protocolError);
  });
});
