/** The router's options, declared once. */
import { type ConfigOf, int, list, logLevelOption, oneOf, str } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { TopologyBinding } from '../runtime/service-config.ts';
import { regionOf } from '../runtime/topology.ts';
import { routerSecretFile, securedPgUrl } from '../runtime/topology-security.ts';

/**
 * What the router asks of its clients: TLS, authentication, limits. Their defaults keep a router
 * for applications on the same host working without set-up (plaintext, trust); a router other
 * hosts reach sets BRABANT_ROUTER_TLS=require and BRABANT_ROUTER_AUTH=scram (docs/router.md).
 */
export const clientAccessConfig = {
  tls: oneOf({
    env: 'BRABANT_ROUTER_TLS',
    values: ['off', 'allow', 'require'],
    description:
      "TLS for clients. allow: a client asking for TLS (sslmode=prefer, require, verify-full) gets it when BRABANT_ROUTER_TLS_CERT and BRABANT_ROUTER_TLS_KEY are set, and plaintext clients are served too; require: plaintext clients are refused (FATAL 28000), both files needed; off: no TLS (an SSL request is answered 'N')",
    default: 'allow',
  }),
  tlsCert: str({
    env: 'BRABANT_ROUTER_TLS_CERT',
    description: 'PEM file of the certificate the router shows its clients (with its chain), read at start',
    default: '',
  }),
  tlsKey: str({
    env: 'BRABANT_ROUTER_TLS_KEY',
    description:
      'PEM file of the private key of BRABANT_ROUTER_TLS_CERT (readable by the router only), read at start',
    default: '',
  }),
  auth: oneOf({
    env: 'BRABANT_ROUTER_AUTH',
    values: ['trust', 'scram'],
    description:
      "How clients log in. trust: no password, clients connect as the user of the node URLs (for applications on the router's host only); scram: SCRAM-SHA-256 against the verifiers of BRABANT_ROUTER_AUTH_QUERY or BRABANT_ROUTER_AUTH_FILE, any role with one, whose transactions then run as that role",
    default: 'trust',
  }),
  authQuery: str({
    env: 'BRABANT_ROUTER_AUTH_QUERY',
    description:
      "With BRABANT_ROUTER_AUTH=scram: the query giving a role's SCRAM verifier (second column; no row: unknown role) for the role name $1, run on the leader as the user of the node URLs, e.g. select rolname, rolpassword from pg_authid where rolname = $1 (pg_authid needs a superuser; docs/router.md has a function that does not)",
    default: '',
  }),
  authFile: str({
    env: 'BRABANT_ROUTER_AUTH_FILE',
    description:
      'With BRABANT_ROUTER_AUTH=scram, instead of a query: a file of lines "role" "SCRAM-SHA-256$…" (verifiers as pg_authid.rolpassword holds them, as in pgbouncer\'s userlist.txt), read at start',
    default: '',
  }),
  maxClients: int({
    env: 'BRABANT_ROUTER_MAX_CLIENTS',
    description:
      'Most client connections at once, logging in or logged in; one more is refused at once (FATAL 53300)',
    default: 1000,
    min: 1,
    max: 1_000_000,
  }),
  maxClientsPerUser: int({
    env: 'BRABANT_ROUTER_MAX_CLIENTS_PER_USER',
    description:
      'Most logged-in client connections of one role, so that one application cannot take them all (0: no limit but BRABANT_ROUTER_MAX_CLIENTS); one more is refused after authentication (FATAL 53300)',
    default: 0,
    min: 0,
    max: 1_000_000,
  }),
  startupTimeoutMs: int({
    env: 'BRABANT_ROUTER_STARTUP_TIMEOUT_MS',
    description:
      'Longest a client may take from connecting to logged in (TLS handshake, startup message, authentication); then it is disconnected',
    default: 10_000,
    min: 100,
    max: 600_000,
  }),
  maxMessageBytes: int({
    env: 'BRABANT_ROUTER_MAX_MESSAGE_BYTES',
    description:
      "Largest message a logged-in client may send, as its length field declares; a larger one ends the connection (08P01) before any of it is read on. The default is PostgreSQL's own limit",
    default: 0x3fffffff,
    min: 1024,
    max: 0x7fffffff,
  }),
};

/** The declared defaults of the client access options (all have one). */
export function clientAccessDefaults(): ConfigOf<typeof clientAccessConfig> {
  return Object.fromEntries(
    Object.entries(clientAccessConfig).map(([k, o]) => [k, o.default]),
  ) as unknown as ConfigOf<typeof clientAccessConfig>;
}

/** How the router logs in to the nodes beyond what their URLs say (embedders may leave it out). */
export const nodeAccessConfig = {
  nodePasswordFile: str({
    env: 'BRABANT_ROUTER_NODE_PASSWORD_FILE',
    description:
      "File holding the password of the router's own role (the user of the node URLs) on every node, read at start, for its health checks, auth query and pool; never put it in the URLs. TLS to the nodes is the URLs' sslmode (verify-full with sslrootcert=FILE)",
    default: '',
  }),
};

export const routerConfig = {
  region: str({ env: 'BRABANT_REGION', description: 'Region whose applications this router serves' }),
  nodes: list({
    env: 'BRABANT_ROUTER_NODES',
    description:
      'Every node in priority order as id@region=postgres://… (the URL names the database applications use), e.g. vl-1@vlaanderen=postgres://app@10.0.0.1/app,wa-1@wallonie=…',
  }),
  database: str({
    env: 'BRABANT_ROUTER_DATABASE',
    description: 'Database name applications connect to on the router',
    default: 'app',
  }),
  port: int({
    env: 'BRABANT_ROUTER_PORT',
    description:
      'Port applications connect to (PostgreSQL protocol, transaction pooling, on 127.0.0.1; clients authenticated as BRABANT_ROUTER_AUTH says)',
    default: 6432,
    min: 1,
    max: 65535,
  }),
  controlPort: int({
    env: 'BRABANT_ROUTER_CONTROL_PORT',
    description:
      'Port of the control API (/status, /switchover, /maintenance, /metrics); 0 picks a free port',
    default: 9403,
    min: 0,
    max: 65535,
  }),
  poolSize: int({
    env: 'BRABANT_ROUTER_POOL_SIZE',
    description:
      'Server connections to the write leader (a client holds one for the length of a transaction)',
    default: 20,
    min: 1,
    max: 1000,
  }),
  waitTimeoutMs: int({
    env: 'BRABANT_ROUTER_WAIT_TIMEOUT_MS',
    description:
      'Longest a transaction waits for a server connection (pool full, switchover, leader not answering) before the client gets an error',
    default: 60_000,
    min: 100,
    max: 3_600_000,
  }),
  checkMs: int({
    env: 'BRABANT_ROUTER_CHECK_MS',
    description: 'Period of health checks',
    default: 200,
    min: 20,
    max: 60_000,
  }),
  checkTimeoutMs: int({
    env: 'BRABANT_ROUTER_CHECK_TIMEOUT_MS',
    description: 'Timeout of one health check (connect and query), and of opening a server connection',
    default: 500,
    min: 50,
    max: 60_000,
  }),
  deadAfterMs: int({
    env: 'BRABANT_ROUTER_DEAD_AFTER_MS',
    description: 'A leader failing checks this long is replaced (failover)',
    default: 1000,
    min: 100,
    max: 600_000,
  }),
  switchoverTimeoutMs: int({
    env: 'BRABANT_ROUTER_SWITCHOVER_TIMEOUT_MS',
    description: 'Longest wait, writes paused, for the target to apply everything the old leader committed',
    default: 5000,
    min: 100,
    max: 600_000,
  }),
  catchUpTimeoutMs: int({
    env: 'BRABANT_ROUTER_CATCH_UP_TIMEOUT_MS',
    description: 'Longest wait, before pausing writes, for a switchover target to catch up with the leader',
    default: 60_000,
    min: 100,
    max: 3_600_000,
  }),
  ...clientAccessConfig,
  ...nodeAccessConfig,
  logLevel: logLevelOption,
};

/** The auth query on the function `brabant node init` makes for the routers' role (node-roles.ts). */
export const ROUTER_AUTH_QUERY = 'select rolname, rolpassword from brabant_auth.lookup($1)';

/** A router's options from a topology file: its region's router entry, and every node, its region's first. */
export const routerTopology: TopologyBinding<typeof routerConfig> = {
  target: 'region',
  options(t, region): Partial<ConfigOf<typeof routerConfig>> {
    regionOf(t, region);
    const r = t.routers.find((x) => x.region === region);
    if (r === undefined)
      throw new BrabantError(
        'CONFIG_INVALID',
        `topology ${t.file} declares no router for region ${region}; add \`routers: [{ region: ${region}, port: 6432 }]\``,
      );
    const nodes = [
      ...t.nodes.filter((n) => n.region === region),
      ...t.nodes.filter((n) => n.region !== region),
    ];
    const sec = t.security;
    if (sec === undefined)
      return {
        region,
        nodes: nodes.map((n) => `${n.id}@${n.region}=${n.postgres}`),
        port: r.port,
        controlPort: r.controlPort,
        database: r.database,
      };
    // secured: its own role over verify-full TLS to every node, TLS and SCRAM required of clients
    return {
      region,
      nodes: nodes.map((n) => `${n.id}@${n.region}=${securedPgUrl(n.postgres, sec.routerRole, sec.ca)}`),
      port: r.port,
      controlPort: r.controlPort,
      database: r.database,
      nodePasswordFile: routerSecretFile(sec),
      auth: 'scram',
      authQuery: ROUTER_AUTH_QUERY,
      ...(sec.routerCertificate === undefined || sec.routerKey === undefined
        ? {}
        : { tls: 'require', tlsCert: sec.routerCertificate, tlsKey: sec.routerKey }),
    };
  },
};
