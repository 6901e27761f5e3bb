import { describe, expect, it } from 'vitest';
import { ancestors, reachPlan } from './reach.ts';

const dir = (d: string, mode = 0o40700) => ({ dir: d, mode, owner: 'root' });

describe('ancestors', () => {
  it('lists every folder from the root down', () => {
    expect(ancestors('/tmp/a/b')).toEqual(['/', '/tmp', '/tmp/a', '/tmp/a/b']);
    expect(ancestors('/')).toEqual(['/']);
  });
});

describe('reachPlan', () => {
  it('has nothing to do when every folder can be entered', () => {
    expect(reachPlan([], '/tmp/h', '/tmp/h/data', 'postgres')).toEqual({ kind: 'reachable' });
  });

  it('fixes the stack folder itself (mktemp -d gives 0700), not the folders hidden behind it', () => {
    const plan = reachPlan([dir('/tmp/h'), dir('/tmp/h/data', 0o40755)], '/tmp/h', '/tmp/h/data', 'postgres');
    expect(plan).toEqual({ kind: 'fix', dirs: [dir('/tmp/h')] });
  });

  it('refuses a folder above the stack folder, with the exact command and another way', () => {
    const plan = reachPlan(
      [dir('/root'), dir('/root/w'), dir('/root/w/h')],
      '/root/w/h',
      '/root/w/h/data',
      'postgres',
    );
    expect(plan.kind).toBe('refuse');
    const message = plan.kind === 'refuse' ? plan.message : '';
    expect(message).toContain('OS user postgres, which cannot enter /root (mode 0700, owner root)');
    expect(message).toContain('its data in /root/w/h/data');
    expect(message).toContain('run `chmod o+x /root`');
    expect(message).toContain('BRABANT_HOME=');
  });
});
