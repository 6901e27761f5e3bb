/** The router's options, declared once. */
import { type ConfigOf, int, list, logLevelOption, str } from '../runtime/config.ts';
import { BrabantError } from '../runtime/errors.ts';
import type { TopologyBinding } from '../runtime/service-config.ts';
import { regionOf } from '../runtime/topology.ts';

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
      'Port applications connect to (PostgreSQL protocol, transaction pooling, on 127.0.0.1; clients are not authenticated)',
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
  logLevel: logLevelOption,
};

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
    return {
      region,
      nodes: nodes.map((n) => `${n.id}@${n.region}=${n.postgres}`),
      port: r.port,
      controlPort: r.controlPort,
      database: r.database,
    };
  },
};
