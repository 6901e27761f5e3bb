/**
 * The counts behind the router's limits on clients (pure): every connection counts from its
 * accept to its close (logging in or logged in), so a flood of connections that never log in is
 * refused at the door; a role's count only once a client of it has authenticated, so that no
 * one can use up another role's places without its password.
 */
import { SQLSTATE } from '../runtime/sqlstate.ts';
import type { Refusal } from './client-login.ts';

export class ClientLimits {
  private connections = 0;
  private readonly perRole = new Map<string, number>();

  constructor(private readonly max: { clients: number; perRole: number }) {}

  get size(): number {
    return this.connections;
  }

  /** A new connection, counted unless refused. */
  accept(): Refusal | undefined {
    if (this.connections >= this.max.clients)
      return {
        sqlstate: SQLSTATE.TOO_MANY_CONNECTIONS,
        reason: 'too_many_clients',
        text: `sorry, too many clients already: the router serves at most ${this.max.clients} connections (BRABANT_ROUTER_MAX_CLIENTS)`,
      };
    this.connections++;
    return undefined;
  }

  /** A counted connection closed. */
  closed(): void {
    this.connections--;
  }

  /** An authenticated client of `role` takes one of its role's places, unless they are taken. */
  enter(role: string): Refusal | undefined {
    const n = this.perRole.get(role) ?? 0;
    if (this.max.perRole > 0 && n >= this.max.perRole)
      return {
        sqlstate: SQLSTATE.TOO_MANY_CONNECTIONS,
        reason: 'too_many_for_role',
        text: `too many connections for role "${role}": the router allows ${this.max.perRole} per role (BRABANT_ROUTER_MAX_CLIENTS_PER_USER)`,
      };
    this.perRole.set(role, n + 1);
    return undefined;
  }

  leave(role: string): void {
    const n = (this.perRole.get(role) ?? 1) - 1;
    if (n > 0) this.perRole.set(role, n);
    else this.perRole.delete(role);
  }
}
