/** PostgreSQL client connections: closing one without waiting for ever. */
import type pg from 'pg';

/**
 * Ends a connection, at most `ms` later: node-postgres' end() waits for the socket's end, which
 * never comes again on a connection the server already broke (a node shutting down).
 */
export async function endWithin(client: pg.Client, ms = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.end().catch(() => {}),
    new Promise<void>((r) => {
      timer = setTimeout(r, ms);
    }),
  ]);
  clearTimeout(timer);
}
