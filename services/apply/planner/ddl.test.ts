import { describe, expect, it } from 'vitest';
import { chooseRunAs } from './ddl.ts';

describe('chooseRunAs: the role a replicated DDL runs as', () => {
  const cases: {
    name: string;
    roleUsable: boolean;
    owners: { role: string; usable: boolean }[];
    want: ReturnType<typeof chooseRunAs>;
  }[] = [
    {
      name: 'its own role when apply may become it (a --ddl-roles role)',
      roleUsable: true,
      owners: [{ role: 'other', usable: false }],
      want: { runAs: 'app', why: 'own-role' },
    },
    {
      name: "a superuser's ALTER of an application's table: the table's owner",
      roleUsable: false,
      owners: [{ role: 'app_owner', usable: true }],
      want: { runAs: 'app_owner', why: 'table-owner' },
    },
    {
      name: 'the same owner listed twice (table and object) is one owner',
      roleUsable: false,
      owners: [
        { role: 'app_owner', usable: true },
        { role: 'app_owner', usable: true },
      ],
      want: { runAs: 'app_owner', why: 'table-owner' },
    },
    {
      name: 'tables of two owners: no single role may run it',
      roleUsable: false,
      owners: [
        { role: 'a', usable: true },
        { role: 'b', usable: true },
      ],
      want: { runAs: null, why: 'none' },
    },
    {
      name: 'an owner apply may not become (a superuser owns the table)',
      roleUsable: false,
      owners: [{ role: 'postgres', usable: false }],
      want: { runAs: null, why: 'none' },
    },
    {
      name: "a superuser's CREATE TABLE: no table here yet, so apply's own role",
      roleUsable: false,
      owners: [],
      want: { runAs: null, why: 'none' },
    },
  ];
  for (const c of cases)
    it(c.name, () => {
      expect(chooseRunAs('app', { roleUsable: c.roleUsable, owners: c.owners })).toEqual(c.want);
    });
});
