/**
 * The link between regions of the local stack, made of TCP relays: every connection from one
 * region to another (a peer's Kafka listener, the primary registry, the registry database's
 * replication) goes through a relay on a loopback port, and the link can be cut, healed and slowed
 * down as a whole. A relay rather than network namespaces joined by a veth pair: it needs no root,
 * runs wherever the stack runs (CI, a laptop), cuts exactly the cross-region connections and
 * nothing else (each region's own services keep reaching its own cluster directly), and adds
 * delay for the "slow link" measurements without tc/netem.
 *
 * A cut either resets every connection and refuses new ones (`reset`: what a peer that went away
 * looks like), or keeps them open and forwards nothing (`blackhole`: what a dead link looks like;
 * clients find out by their own timeouts). A heal forwards again; connections a blackhole held are
 * closed then, as their peers gave up on them.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

export type CutMode = 'reset' | 'blackhole';

export interface RelaySpec {
  /** What it carries, e.g. `kafka-vlaanderen from wallonie`. */
  name: string;
  listenPort: number;
  targetHost: string;
  targetPort: number;
}

export interface LinkStatus {
  cut: CutMode | null;
  delayMs: number;
  relays: { name: string; listenPort: number; target: string; open: number; forwardedBytes: number }[];
}

interface Pair {
  client: Socket;
  server: Socket;
}

/** One relay: a listening socket and the connection pairs it forwards. */
class Relay {
  private readonly pairs = new Set<Pair>();
  private server: Server | undefined;
  forwardedBytes = 0;

  constructor(
    readonly spec: RelaySpec,
    private readonly link: Link,
  ) {}

  async listen(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: this.spec.listenPort }, () => resolve());
    });
    this.server = server;
  }

  get open(): number {
    return this.pairs.size;
  }

  private accept(client: Socket): void {
    client.setNoDelay(true);
    if (this.link.cut === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const server = tcpConnect({ host: this.spec.targetHost, port: this.spec.targetPort });
    server.setNoDelay(true);
    const pair = { client, server };
    this.pairs.add(pair);
    const close = () => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('error', close).on('close', close);
    server.on('error', close).on('close', close);
    this.pipe(client, server);
    this.pipe(server, client);
  }

  /**
   * Forwards `from` → `to` after the link's delay, in order. While cut nothing moves: a reset cut
   * has ended the pair already, a blackhole's pairs are ended at the heal.
   */
  private pipe(from: Socket, to: Socket): void {
    const queue: { at: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const drain = () => {
      timer = undefined;
      while (queue.length > 0 && this.link.cut === null) {
        const wait = queue[0]!.at - Date.now();
        if (wait > 0) {
          timer = setTimeout(drain, wait);
          return;
        }
        const { chunk } = queue.shift()!;
        this.forwardedBytes += chunk.length;
        to.write(chunk);
      }
    };
    from.on('data', (chunk: Buffer) => {
      if (this.link.cut !== null) return; // a dead link loses what is sent over it
      queue.push({ at: Date.now() + this.link.delayMs, chunk });
      if (timer === undefined) drain();
    });
  }

  /** Ends every connection (a reset cut, a heal after a blackhole, the stop). */
  dropAll(): void {
    for (const p of this.pairs) {
      p.client.resetAndDestroy();
      p.server.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Every relay between the regions, cut and healed together. */
export class Link {
  cut: CutMode | null = null;
  delayMs = 0;
  private readonly relays: Relay[];

  constructor(specs: RelaySpec[]) {
    this.relays = specs.map((s) => new Relay(s, this));
  }

  async start(): Promise<void> {
    for (const r of this.relays) await r.listen();
  }

  setCut(mode: CutMode): void {
    this.cut = mode;
    if (mode === 'reset') for (const r of this.relays) r.dropAll();
  }

  heal(): void {
    const was = this.cut;
    this.cut = null;
    // connections a blackhole held have been given up by their clients: close them
    if (was === 'blackhole') for (const r of this.relays) r.dropAll();
  }

  status(): LinkStatus {
    return {
      cut: this.cut,
      delayMs: this.delayMs,
      relays: this.relays.map((r) => ({
        name: r.spec.name,
        listenPort: r.spec.listenPort,
        target: `${r.spec.targetHost}:${r.spec.targetPort}`,
        open: r.open,
        forwardedBytes: r.forwardedBytes,
      })),
    };
  }

  async stop(): Promise<void> {
    for (const r of this.relays) await r.close();
  }
}
