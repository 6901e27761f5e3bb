/**
 * The nodes a command talks to: found in the local stack's state (BRABANT_HOME) by id, each in
 * the database given, and a connection to one for the length of a command.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { withDatabase } from '../../infra/postgres/postgres.ts';
import { readState } from '../../infra/stack-state.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { ClientTls } from '../runtime/security.ts';

export interface NodeTarget {
  id: string;
  region: string;
  url: string;
}

/**
 * The nodes of the local stack started from `home`, each in `database`, and its registry (with
 * the stack's client certificate when it is secured).
 */
export function stackNodes(
  home: string,
  database: string,
): { nodes: NodeTarget[]; registryUrl: string; registryTls?: ClientTls } {
  const state = readState(home);
  if (state === undefined)
    throw new BrabantError(
      'STACK_NOT_RUNNING',
      `no local stack in ${home} to find nodes in; start one (brabant up) or set BRABANT_HOME`,
    );
  return {
    nodes: state.regions.flatMap((r) =>
      r.nodes.map((n) => ({ id: n.id, region: r.name, url: withDatabase(n.url, database) })),
    ),
    registryUrl: state.registryUrl,
    ...(state.security === undefined
      ? {}
      : {
          registryTls: {
            ca: readFileSync(state.security.ca, 'utf8'),
            cert: readFileSync(state.security.clientCert, 'utf8'),
            key: readFileSync(state.security.clientKey, 'utf8'),
          },
        }),
  };
}

/** The node `id` (given with --node), or an error that lists the nodes there are. */
export function pickNode(nodes: NodeTarget[], id: string | undefined): NodeTarget {
  if (id === undefined) throw new BrabantError('CONFIG_INVALID', 'say which node: --node <id>');
  const n = nodes.find((x) => x.id === id);
  if (n === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `no node ${id} in the stack (nodes: ${nodes.map((x) => x.id).join(', ')})`,
    );
  return n;
}

export async function connected<T>(url: string, fn: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    return await fn(db);
  } finally {
    await db.end().catch(() => {});
  }
}

/** A progress line of a command, with the time. */
export const say = (m: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);
