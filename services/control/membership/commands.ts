/** `brabant node join|part`: the command line of the membership commands (join.ts, part.ts). */
import { BrabantError } from '../../runtime/errors.ts';
import { readTopology } from '../../runtime/topology.ts';
import { topologyFile } from '../start-commands.ts';
import { join } from './join.ts';
import { part } from './part.ts';

export async function node(o: {
  action: string | undefined;
  node: string | undefined;
  from?: string | undefined;
  topology?: string | undefined;
  home: string;
  rebuild: boolean;
  undo: boolean;
  force: boolean;
  timeout?: string | undefined;
}): Promise<number> {
  const timeoutSeconds = Number(o.timeout ?? 600);
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 1)
    throw new BrabantError(
      'CONFIG_INVALID',
      `--timeout must be a whole number of seconds, not '${o.timeout}'`,
    );
  if ((o.action !== 'join' && o.action !== 'part') || o.node === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      'usage: brabant node init NODE | brabant node join NODE --from PEER [--rebuild] [--undo] | brabant node part NODE [--force] (--topology FILE)',
    );
  const topology = readTopology(topologyFile(o.topology, o.home));
  if (o.action === 'join')
    return join({ topology, node: o.node, from: o.from, rebuild: o.rebuild, undo: o.undo, timeoutSeconds });
  return part({ topology, node: o.node, force: o.force, timeoutSeconds });
}
