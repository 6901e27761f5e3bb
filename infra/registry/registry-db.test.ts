import { describe, expect, it } from 'vitest';
import { registryStorageFromUrl } from './registry-db.ts';

describe('registryStorageFromUrl', () => {
  it('turns a postgres:// URL into the JDBC URL, user and password Apicurio takes', () => {
    expect(registryStorageFromUrl('postgres://reg:s%40cret@db.example:6543/schemas?sslmode=require')).toEqual(
      {
        jdbcUrl: 'jdbc:postgresql://db.example:6543/schemas?sslmode=require',
        username: 'reg',
        password: 's@cret',
      },
    );
  });

  it('defaults the port to 5432 and the user to postgres', () => {
    expect(registryStorageFromUrl('postgresql://127.0.0.1/registry')).toEqual({
      jdbcUrl: 'jdbc:postgresql://127.0.0.1:5432/registry',
      username: 'postgres',
      password: '',
    });
  });

  it('refuses what is not a PostgreSQL URL with a database, saying what to give', () => {
    expect(() => registryStorageFromUrl('db:5432')).toThrow(/must start with postgres:\/\//);
    expect(() => registryStorageFromUrl('not a url')).toThrow(/is not a URL; give postgres:\/\//);
    expect(() => registryStorageFromUrl('postgres://h:5432')).toThrow(
      /names no database.*postgres:\/\/h:5432\/registry/,
    );
  });
});
