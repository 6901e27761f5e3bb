/** `brabant link cut|heal|delay MS|status`: the local stack's link between regions (infra/link). */
import { linkControl } from '../../infra/link/control.ts';
import type { CutMode } from '../../infra/link/relay.ts';
import { readState } from '../../infra/stack.ts';
import { canonical } from '../../infra/stack-control.ts';
import { BrabantError } from '../runtime/errors.ts';

export async function link(opts: {
  home: string;
  action: string | undefined;
  arg: string | undefined;
  mode: string | undefined;
}): Promise<number> {
  const state = readState(canonical(opts.home));
  if (state?.linkUrl === undefined)
    throw new BrabantError(
      'STACK_NOT_RUNNING',
      `no local stack with a link between regions runs from ${canonical(opts.home)}; start one with \`brabant up --kafka per-region --detach\``,
    );
  const c = linkControl(state.linkUrl);
  let status: Awaited<ReturnType<typeof c.status>>;
  switch (opts.action) {
    case 'cut': {
      const mode = (opts.mode ?? 'reset') as CutMode;
      if (mode !== 'reset' && mode !== 'blackhole')
        throw new BrabantError('CONFIG_INVALID', `--mode must be reset or blackhole, not '${opts.mode}'`);
      status = await c.cut(mode);
      break;
    }
    case 'heal':
      status = await c.heal();
      break;
    case 'delay': {
      const ms = Number(opts.arg);
      if (!Number.isInteger(ms) || ms < 0 || ms > 60_000)
        throw new BrabantError(
          'CONFIG_INVALID',
          `brabant link delay takes milliseconds 0..60000, not '${opts.arg}'`,
        );
      status = await c.delay(ms);
      break;
    }
    case 'status':
    case undefined:
      status = await c.status();
      break;
    default:
      throw new BrabantError(
        'CONFIG_INVALID',
        `brabant link takes cut, heal, delay MS or status, not '${opts.action}'`,
      );
  }
  console.log(
    `link: ${status.cut === null ? 'up' : `cut (${status.cut})`}, delay ${status.delayMs} ms each way`,
  );
  for (const r of status.relays)
    console.log(
      `  ${r.name}: 127.0.0.1:${r.listenPort} → ${r.target}, ${r.open} connection(s), ${r.forwardedBytes} bytes`,
    );
  return 0;
}
