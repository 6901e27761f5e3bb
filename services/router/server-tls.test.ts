import { describe, expect, it } from 'vitest';
import { withPassword } from './router.ts';
import { targetOf } from './server-connection.ts';
import { serverTlsOf, sslRequest } from './server-tls.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const read = (f: string) => `${PEM}# ${f}`;
const tlsOf = (query: string) => serverTlsOf(new URL(`postgres://r@db.example:5432/app${query}`), read);

describe('TLS from the router to a node, as the URL’s sslmode says', () => {
  it('plaintext without sslmode, with disable and allow (as the router always did)', () => {
    expect(tlsOf('')).toBeUndefined();
    expect(tlsOf('?sslmode=disable')).toBeUndefined();
    expect(tlsOf('?sslmode=allow')).toBeUndefined();
  });

  it('prefer and require without a root certificate: TLS, the certificate not checked', () => {
    expect(tlsOf('?sslmode=prefer')).toEqual({ mode: 'prefer' });
    expect(tlsOf('?sslmode=require')).toEqual({ mode: 'require' });
  });

  it('verify-ca and verify-full read sslrootcert; require with one checks the chain (libpq)', () => {
    expect(tlsOf('?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem')).toEqual({
      mode: 'verify-full',
      ca: `${PEM}# /etc/ca.pem`,
    });
    expect(tlsOf('?sslmode=verify-ca&sslrootcert=ca.pem')).toEqual({
      mode: 'verify-ca',
      ca: `${PEM}# ca.pem`,
    });
    expect(tlsOf('?sslmode=require&sslrootcert=ca.pem')).toEqual({ mode: 'verify-ca', ca: `${PEM}# ca.pem` });
  });

  it('refuses an unknown sslmode and verification without a CA, naming the fix', () => {
    expect(() => tlsOf('?sslmode=verify')).toThrow(/sslmode=verify is not one of disable, allow, prefer/);
    expect(() => tlsOf('?sslmode=verify-full')).toThrow(/verify-full needs sslrootcert=FILE/);
  });

  it('a CA file that cannot be read or is not PEM is a config error naming the file', () => {
    const url = (f: string) => new URL(`postgres://r@h/app?sslmode=verify-full&sslrootcert=${f}`);
    expect(() => serverTlsOf(url('/nonexistent/ca.pem'))).toThrow(
      /sslrootcert \/nonexistent\/ca.pem of a node URL cannot be read \(ENOENT\)/,
    );
    expect(() => serverTlsOf(url('/etc/hostname'))).toThrow(/is not a PEM file/);
  });

  it('the SSLRequest is 8 bytes: length 8 and code 80877103', () => {
    expect([...sslRequest()]).toEqual([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  });

  it('the router role’s password joins a URL that has none, never replacing one', () => {
    expect(targetOf('postgres://router@h:5/app', 'p@ss/w:rd')).toMatchObject({
      user: 'router',
      password: 'p@ss/w:rd',
    });
    expect(targetOf(withPassword('postgres://router@h:5/app', 'p@ss/w:rd'))).toMatchObject({
      password: 'p@ss/w:rd',
    });
    expect(withPassword('postgres://router:own@h/app', 'other')).toBe('postgres://router:own@h/app');
    expect(withPassword('postgres://router@h/app', undefined)).toBe('postgres://router@h/app');
  });
});
