import { describe, expect, it } from 'vitest';
import { ClientLimits } from './client-limits.ts';

describe('limits on clients', () => {
  it('counts every connection from accept to close; one over the limit is refused with 53300', () => {
    const limits = new ClientLimits({ clients: 2, perRole: 0 });
    expect(limits.accept()).toBeUndefined();
    expect(limits.accept()).toBeUndefined();
    expect(limits.accept()).toMatchObject({ sqlstate: '53300', reason: 'too_many_clients' });
    expect(limits.size).toBe(2);
    limits.closed();
    expect(limits.accept()).toBeUndefined();
  });

  it('counts a role’s clients once authenticated; 0 means no limit per role', () => {
    const limits = new ClientLimits({ clients: 100, perRole: 2 });
    expect(limits.enter('a')).toBeUndefined();
    expect(limits.enter('a')).toBeUndefined();
    expect(limits.enter('a')).toMatchObject({
      sqlstate: '53300',
      reason: 'too_many_for_role',
      text: expect.stringMatching(/role "a".*BRABANT_ROUTER_MAX_CLIENTS_PER_USER/),
    });
    expect(limits.enter('b')).toBeUndefined();
    limits.leave('a');
    expect(limits.enter('a')).toBeUndefined();
    const unlimited = new ClientLimits({ clients: 100, perRole: 0 });
    for (let i = 0; i < 50; i++) expect(unlimited.enter('a')).toBeUndefined();
  });
});
