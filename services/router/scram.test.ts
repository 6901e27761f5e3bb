import { describe, expect, it } from 'vitest';
import { isBrabantError } from '../runtime/errors.ts';
import { clientFinal, clientFirst, verifyServerFinal } from './scram.ts';

// RFC 7677 section 3: user "user", password "pencil".
const nonce = 'rOprNGfwEbeRWgbNEkqO';
const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';

describe('SCRAM-SHA-256 client', () => {
  it('reproduces the RFC 7677 exchange', () => {
    const first = clientFirst(nonce, 'user');
    expect(first.message).toBe('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    const final = clientFinal(first.state, serverFirst, { password: 'pencil' });
    expect(final.message).toBe(
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    expect(final.expectedServerSignature).toBe('6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
    expect(() =>
      verifyServerFinal('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', final.expectedServerSignature),
    ).not.toThrow();
  });

  it('refuses a server that does not know the password or does not extend the nonce', () => {
    const first = clientFirst(nonce);
    const final = clientFinal(first.state, serverFirst, { password: 'pencil' });
    let err: unknown;
    try {
      verifyServerFinal('v=AAAA', final.expectedServerSignature);
    } catch (e) {
      err = e;
    }
    expect(isBrabantError(err, 'SERVER_REFUSED')).toBe(true);
    expect(() =>
      clientFinal(first.state, 'r=other,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', { password: 'pencil' }),
    ).toThrow(/nonce/);
    expect(() => clientFinal(first.state, 'garbage', { password: 'pencil' })).toThrow(/malformed/);
  });
});
