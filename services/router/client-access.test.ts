import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clientAccessOf, lookUpListed, parseUserList } from './client-access.ts';
import { clientAccessDefaults } from './config.ts';
import { formatVerifier, makeVerifier } from './scram-server.ts';

const verifier = makeVerifier('pencil', Buffer.from('0123456789abcdef'), 4096);
const configInvalid = (message: RegExp) =>
  expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(message) });

describe('the user list file', () => {
  it('reads "role" "verifier" lines, with comments, blank lines and doubled quotes', () => {
    const text = `# who may log in\n\n; pgbouncer-style comment\n"app" "${formatVerifier(verifier)}"\n"we""ird" "${formatVerifier(verifier)}"\r\n`;
    const users = parseUserList(text, 'users.txt');
    expect([...users.keys()]).toEqual(['app', 'we"ird']);
    expect(lookUpListed(users, 'app')).toEqual({ kind: 'found', verifier });
    expect(lookUpListed(users, 'other')).toEqual({
      kind: 'missing',
      why: 'role "other" is not in the user list',
    });
  });

  it('refuses a password or md5 hash, a malformed line and a role listed twice, naming the line', () => {
    expect(() => parseUserList('"app" "pencil"', 'u.txt')).toThrow(
      configInvalid(/u.txt line 1: role "app" has no SCRAM-SHA-256 verifier/),
    );
    expect(() => parseUserList('"app" "md5a3556571e93b0d20722ba62be61e8c2d"', 'u.txt')).toThrow(
      configInvalid(/line 1/),
    );
    expect(() => parseUserList('\napp pencil', 'u.txt')).toThrow(
      configInvalid(/u.txt line 2 is not of the form/),
    );
    const line = `"app" "${formatVerifier(verifier)}"`;
    expect(() => parseUserList(`${line}\n${line}`, 'u.txt')).toThrow(
      configInvalid(/line 2: role "app" is listed twice/),
    );
  });
});

describe('client access from the options', () => {
  const defaults = clientAccessDefaults();

  it('by default: no TLS, trust, and the limits as declared (what a router on the applications’ host needs)', () => {
    expect(clientAccessOf(defaults)).toEqual({
      tls: { mode: 'off' },
      auth: { kind: 'trust' },
      maxClients: 1000,
      maxClientsPerUser: 0,
      startupTimeoutMs: 10_000,
      maxMessageBytes: 0x3fffffff,
    });
  });

  it('says which option is missing or contradicts another', () => {
    expect(() => clientAccessOf({ ...defaults, tls: 'require' })).toThrow(
      configInvalid(/BRABANT_ROUTER_TLS=require needs a certificate/),
    );
    expect(() => clientAccessOf({ ...defaults, tlsCert: '/x.pem' })).toThrow(configInvalid(/go together/));
    expect(() =>
      clientAccessOf({ ...defaults, tlsCert: '/nonexistent.pem', tlsKey: '/nonexistent.key' }),
    ).toThrow(configInvalid(/BRABANT_ROUTER_TLS_CERT: cannot read \/nonexistent.pem \(ENOENT\)/));
    expect(() => clientAccessOf({ ...defaults, auth: 'scram' })).toThrow(
      configInvalid(/BRABANT_ROUTER_AUTH_QUERY .* or BRABANT_ROUTER_AUTH_FILE/),
    );
    expect(() => clientAccessOf({ ...defaults, authFile: '/u.txt' })).toThrow(
      configInvalid(/BRABANT_ROUTER_AUTH=trust lets clients in without a password/),
    );
    expect(() =>
      clientAccessOf({ ...defaults, auth: 'scram', authQuery: 'select 1', authFile: '/u.txt' }),
    ).toThrow(configInvalid(/not both/));
    expect(() =>
      clientAccessOf({ ...defaults, auth: 'scram', authQuery: 'select rolpassword from pg_authid' }),
    ).toThrow(configInvalid(/must use \$1/));
  });

  it('a certificate file that is not one is said so, with both files named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'brabant-tls-'));
    writeFileSync(join(dir, 'c.pem'), 'not a certificate');
    writeFileSync(join(dir, 'k.pem'), 'not a key');
    expect(() =>
      clientAccessOf({ ...defaults, tlsCert: join(dir, 'c.pem'), tlsKey: join(dir, 'k.pem') }),
    ).toThrow(
      configInvalid(/c.pem and BRABANT_ROUTER_TLS_KEY .*k.pem are not a PEM certificate and its private key/),
    );
  });

  it('scram with a user list reads the file at start', () => {
    const dir = mkdtempSync(join(tmpdir(), 'brabant-users-'));
    const file = join(dir, 'users.txt');
    writeFileSync(file, `"app" "${formatVerifier(verifier)}"\n`);
    const access = clientAccessOf({ ...defaults, auth: 'scram', authFile: file });
    expect(access.auth).toEqual({
      kind: 'scram',
      source: { kind: 'file', file, users: new Map([['app', verifier]]) },
    });
  });
});
