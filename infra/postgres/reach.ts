/**
 * Run as root, the stack starts PostgreSQL as the `postgres` OS user, which must be able to enter
 * every folder on the way to its data. A stack folder made by `mktemp -d` (mode 0700, owner root)
 * is not: initdb then fails with a bare "Permission denied". The stack's own folder (BRABANT_HOME
 * and what is inside it) is Brabant's to fix, so it is given search permission for others (enter,
 * not list). A folder above it belongs to someone else: that is refused with the exact command.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { dirname, sep } from 'node:path';
import { BrabantError } from '../../services/runtime/errors.ts';

/** '/a/b/c' → ['/', '/a', '/a/b', '/a/b/c'] (an absolute path). */
export function ancestors(dir: string): string[] {
  const out: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    out.unshift(d);
    if (dirname(d) === d) return out;
  }
}

export interface BlockedDir {
  dir: string;
  mode: number;
  owner: string;
}

export type ReachPlan =
  | { kind: 'reachable' }
  | { kind: 'fix'; dirs: BlockedDir[] }
  | { kind: 'refuse'; message: string };

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');
const inside = (dir: string, home: string) => dir === home || dir.startsWith(`${home}${sep}`);

/**
 * What to do about the folders the OS user cannot enter on the way to `target`: fix those inside
 * the stack folder `home`, refuse (naming each folder and the command) when one is above it.
 */
export function reachPlan(all: BlockedDir[], home: string, target: string, user: string): ReachPlan {
  // Below a folder it cannot enter, the user cannot even look: only the first ones are known.
  const blocked = all.filter((b) => !all.some((o) => o.dir === dirname(b.dir) && o.dir !== b.dir));
  if (blocked.length === 0) return { kind: 'reachable' };
  const foreign = blocked.filter((b) => !inside(b.dir, home));
  if (foreign.length === 0) return { kind: 'fix', dirs: blocked };
  const which = foreign.map((b) => `${b.dir} (mode ${octal(b.mode)}, owner ${b.owner})`).join(', ');
  return {
    kind: 'refuse',
    message:
      `PostgreSQL runs as the OS user ${user}, which cannot enter ${which}, so it cannot reach its data in ${target}; ` +
      `run \`chmod o+x ${foreign.map((b) => b.dir).join(' ')}\` (lets other users pass through, not list), ` +
      'or choose a stack folder it can reach, e.g. `BRABANT_HOME=/var/tmp/brabant brabant up`',
  };
}

/** The folders on the way to `target` (inclusive) that `user` may not enter. */
function blockedFor(user: string, target: string): BlockedDir[] {
  const dirs = ancestors(target);
  // One program run as that user checks them all: the kernel's answer, ACLs included.
  const out = execFileSync(
    'runuser',
    ['-u', user, '--', 'sh', '-c', 'for d; do [ -x "$d" ] || printf "%s\\n" "$d"; done', 'sh', ...dirs],
    { encoding: 'utf8' },
  );
  return out
    .split('\n')
    .filter((d) => d !== '')
    .map((dir) => {
      const st = statSync(dir);
      return { dir, mode: st.mode, owner: ownerName(st.uid) };
    });
}

function ownerName(uid: number): string {
  try {
    return execFileSync('id', ['-nu', String(uid)], { encoding: 'utf8' }).trim();
  } catch {
    return `uid ${uid}`;
  }
}

/**
 * Makes sure `user` can reach `target` inside the stack folder `home`, fixing the stack's own
 * folders (reported through progress) or refusing with CONFIG_INVALID.
 */
export function ensureReachable(
  user: string,
  home: string,
  target: string,
  progress: (m: string) => void,
): void {
  // Each fix may reveal a folder further down that was hidden behind it: look again.
  for (let round = 0; round <= ancestors(target).length; round++) {
    const plan = reachPlan(blockedFor(user, target), home, target, user);
    switch (plan.kind) {
      case 'reachable':
        return;
      case 'refuse':
        throw new BrabantError('HOME_UNREACHABLE', plan.message);
      case 'fix':
        for (const b of plan.dirs) {
          chmodSync(b.dir, (b.mode & 0o7777) | 0o001);
          progress(
            `${b.dir} had mode ${octal(b.mode)}: gave other users search permission (chmod o+x), ` +
              `so that PostgreSQL (OS user ${user}) can reach its data in it`,
          );
        }
        break;
      default:
        plan satisfies never;
    }
  }
}
