/**
 * Where one of the proxy's server connections is in its life (pure: a tagged union; the proxy
 * switches over it and ends each switch with `satisfies never`, so a state added here is a type
 * error wherever it is not handled). A client is linked to a connection only in the three states
 * that carry it: what can happen to its transaction depends on which one.
 *
 * Transitions (relay.ts makes them, server-pool.ts for idle, lost and closing):
 *
 *   from                event                                         to
 *   ─────────────────── ───────────────────────────────────────────── ───────────────────────────
 *   (logged in)                                                       idle
 *   idle                a waiting client, its settings differ         setting-up (SET sent)
 *   idle, setting-up ✓  the client's bytes sent, no transaction open  first-answer-due
 *   idle, setting-up ✓  the client's bytes sent inside a transaction  in-transaction
 *   setting-up          exit on postmaster death                      lost (the client waits again)
 *   first-answer-due    first answer is the exit on postmaster death  lost (the client waits again)
 *   first-answer-due    any other answer                              in-transaction
 *   in-transaction      the client gone during COPY FROM STDIN        in-transaction (CopyFail sent
 *                       (a simple Query's, between two messages)      for it; its end as below)
 *   first-answer-due,   the transaction is over                       idle (to the next client)
 *     in-transaction    … with bytes behind its last answer           lost (the idle backend exits)
 *   idle                the node speaks (only to say it goes away)    lost (out of the pool at once)
 *   any                 the proxy closes it: client dropped (settings closing (Terminate sent)
 *                       refused, protocol error) or gone inside a
 *                       transaction; old target; stop
 *   any                 the socket closed                             closed: a client setting up
 *                                                                     waits again, one in a
 *                                                                     transaction fails (08006)
 *
 * (setting-up ✓: its SET statements answered without an error.)
 *
 * `lost` and `closing` differ in what their close means: a lost connection makes the proxy
 * suspect the leader; one it closed on purpose does not.
 */

export type ServerState<Client> =
  /** Logged in, serving no one: in the pool (or about to be). */
  | { kind: 'idle' }
  /**
   * Running the SET statements that give it its client's settings; nothing of the client's
   * was sent yet. `error`: the message of an error the statements got.
   */
  | { kind: 'setting-up'; client: Client; error: string | undefined }
  /**
   * A transaction begun on it, none of it answered: `sent` are its bytes. If the first answer is
   * the backend's exit on postmaster death, the node never read them, and the transaction is
   * sent again to the next leader instead of failing.
   */
  | { kind: 'first-answer-due'; client: Client; sent: Buffer[] }
  /** In its client's transaction, which the node has begun to answer. */
  | { kind: 'in-transaction'; client: Client }
  /** Going away and no longer to be used: its close counts as a loss. */
  | { kind: 'lost' }
  /** Closed on purpose (Terminate sent): its close is no sign of trouble. */
  | { kind: 'closing' }
  /** The socket closed. */
  | { kind: 'closed' };

/** The client a server connection serves, in the states that have one. */
export function servedClient<Client>(state: ServerState<Client>): Client | undefined {
  switch (state.kind) {
    case 'setting-up':
    case 'first-answer-due':
    case 'in-transaction':
      return state.client;
    case 'idle':
    case 'lost':
    case 'closing':
    case 'closed':
      return undefined;
    default:
      return state satisfies never;
  }
}
