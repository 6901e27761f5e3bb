import { describe, expect, it } from 'vitest';
import { POLICY_TABLES, rolePlan } from './node-roles.ts';

const catalog = {
  database: 'app',
  schemas: ['public'],
  owners: ['postgres'],
  superusers: ['postgres'],
};

describe('rolePlan: DDL roles', () => {
  const plan = rolePlan({
    capture: { role: 'brabant_capture' },
    apply: { role: 'brabant_apply' },
    ddlRoles: ['app_owner'],
    catalog,
  });

  it('makes apply a member of a DDL role, so a replicated DDL runs as it', () => {
    expect(plan).toContain('grant "app_owner" to "brabant_apply"');
  });

  it('grants apply the tables a DDL role will own, before it owns any (default privileges)', () => {
    expect(plan).toContain(
      'alter default privileges for role "app_owner" grant select, insert, update, delete, truncate on tables to "brabant_apply"',
    );
    // and the owners of today's tables still
    expect(plan).toContain(
      'alter default privileges for role "postgres" grant select, insert, update, delete, truncate on tables to "brabant_apply"',
    );
  });

  it("lets a DDL role set its own tables' conflict policies, and nothing of Brabant's else", () => {
    const grants = plan.filter((s) => s.includes('to "app_owner"'));
    expect(grants).toEqual([
      `grant select, insert, update, delete on ${POLICY_TABLES.join(', ')} to "app_owner"`,
    ]);
  });

  it('refuses a superuser as a DDL role', () => {
    expect(() =>
      rolePlan({
        capture: { role: 'c' },
        apply: { role: 'a' },
        ddlRoles: ['postgres'],
        catalog,
      }),
    ).toThrow(/postgres is a superuser/);
  });
});
