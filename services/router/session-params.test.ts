import { describe, expect, it } from 'vitest';
import { isBrabantError } from '../runtime/errors.ts';
import { clientVars, DEFAULT, serverVars, setStatements } from './session-params.ts';

const reported = new Map([
  ['client_encoding', 'UTF8'],
  ['DateStyle', 'ISO, MDY'],
  ['TimeZone', 'UTC'],
  ['application_name', 'brabant-router'],
  ['server_version', '15.18'],
]);

describe('session parameters under transaction pooling', () => {
  it('a client without settings of its own needs nothing set but its (empty) application name', () => {
    const server = serverVars(reported);
    expect(server.get('statement_timeout')).toBe(DEFAULT);
    expect(server.has('server_version')).toBe(false);
    const client = clientVars(
      new Map([
        ['user', 'u'],
        ['database', 'app'],
      ]),
      server,
    );
    expect(setStatements(client, server)).toBe(`SET "application_name" TO '';`);
  });

  it('carries startup settings (any case) to the server, quoted, and resets them for the next client', () => {
    const server = serverVars(reported);
    const a = clientVars(
      new Map([
        ['database', 'app'],
        ['timezone', "Europe/Brussels'"],
        ['application_name', 'orders'],
        ['statement_timeout', '5000'],
        ['extra_float_digits', '3'],
      ]),
      serverVars(reported),
    );
    expect(setStatements(a, server)).toBe(
      `SET "TimeZone" TO 'Europe/Brussels'''; SET "application_name" TO 'orders'; SET "statement_timeout" TO '5000';`,
    );
    const afterA = new Map(a);
    const b = clientVars(new Map(), serverVars(reported));
    expect(setStatements(b, afterA)).toBe(
      `SET "TimeZone" TO 'UTC'; SET "application_name" TO ''; SET "statement_timeout" TO DEFAULT;`,
    );
    expect(setStatements(a, afterA)).toBe('');
  });

  it('refuses a startup parameter it cannot carry between server connections, naming it', () => {
    let err: unknown;
    try {
      clientVars(new Map([['options', '-c search_path=x']]), serverVars(reported));
    } catch (e) {
      err = e;
    }
    expect(isBrabantError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/'options'/);
  });
});
