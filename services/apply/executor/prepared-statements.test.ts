import { describe, expect, it } from 'vitest';
import { PreparedStatements } from './prepared-statements.ts';

describe('prepared statements of a connection', () => {
  it('names each owner and shape once and prepares it before its first use only', async () => {
    const sent: string[] = [];
    const ps = new PreparedStatements({ query: async (sql: string) => sent.push(sql) });
    const table = {};
    let built = 0;
    const build = () => {
      built++;
      return { sql: 'select $1', paramTypes: ['int'] };
    };
    const a = ps.execute(table, 'one', build, ['1']);
    const b = ps.execute(table, 'one', build, ['2']);
    const c = ps.execute(table, 'two', () => ({ sql: 'select $1::text', paramTypes: [] }), ["'x'"]);
    expect([a, b, c]).toEqual([
      'execute brabant_fast_1(1)',
      'execute brabant_fast_1(2)',
      "execute brabant_fast_2('x')",
    ]);
    expect(built).toBe(1);
    await ps.prepareNew();
    expect(sent).toEqual([
      'prepare brabant_fast_1(int) as select $1',
      'prepare brabant_fast_2 as select $1::text',
    ]);
    ps.execute(table, 'one', build, ['3']);
    await ps.prepareNew();
    expect(sent).toHaveLength(2);
    // another owner (a new version of the table) gets statements of its own
    expect(ps.execute({}, 'one', build, ['4'])).toBe('execute brabant_fast_3(4)');
  });

  it('keeps a statement to prepare when preparing it failed, for the next round trip', async () => {
    let fail = true;
    const sent: string[] = [];
    const ps = new PreparedStatements({
      query: async (sql: string) => {
        if (fail) throw new Error('connection lost');
        sent.push(sql);
      },
    });
    ps.execute({}, 's', () => ({ sql: 'select 1', paramTypes: [] }), []);
    await expect(ps.prepareNew()).rejects.toThrow('connection lost');
    fail = false;
    await ps.prepareNew();
    expect(sent).toEqual(['prepare brabant_fast_1 as select 1']);
  });
});
