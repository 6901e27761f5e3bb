/** `brabant node init NODE`: the CLI face of node-init.ts (arguments, the topology, the report). */
import { BrabantError } from '../runtime/errors.ts';
import { readTopology } from '../runtime/topology.ts';
import { initNode } from './node-init.ts';
import { say } from './nodes.ts';
import { topologyFile } from './start-commands.ts';

export async function nodeCommand(opts: {
  home: string;
  action: string | undefined;
  node: string | undefined;
  topology: string | undefined;
  adminUrl: string | undefined;
  database: string | undefined;
  sequenceIndex: string | undefined;
  ddlRoles: string | undefined;
  tables: string | undefined;
}): Promise<number> {
  if (opts.action !== 'init')
    throw new BrabantError(
      'CONFIG_INVALID',
      `brabant node ${opts.action ?? ''}: the node command is \`brabant node init NODE\` (set a node up once, as a superuser)`,
    );
  if (opts.node === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      'say which node: brabant node init NODE (an id of the topology)',
    );
  const index = opts.sequenceIndex === undefined ? undefined : Number(opts.sequenceIndex);
  if (index !== undefined && (!Number.isInteger(index) || index < 0))
    throw new BrabantError(
      'CONFIG_INVALID',
      `--sequence-index must be a whole number from 0, not '${opts.sequenceIndex}'`,
    );
  const list = (s: string | undefined) =>
    s === undefined
      ? undefined
      : s
          .split(',')
          .map((x) => x.trim())
          .filter((x) => x !== '');
  const ddlRoles = list(opts.ddlRoles);
  const tables = list(opts.tables);
  await initNode({
    topology: readTopology(topologyFile(opts.topology, opts.home)),
    nodeId: opts.node,
    ...(opts.adminUrl === undefined ? {} : { adminUrl: opts.adminUrl }),
    ...(opts.database === undefined ? {} : { database: opts.database }),
    ...(index === undefined ? {} : { sequenceIndex: index }),
    ...(ddlRoles === undefined ? {} : { ddlRoles }),
    ...(tables === undefined ? {} : { tables }),
    say,
  });
  return 0;
}
