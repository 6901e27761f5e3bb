/**
 * Configuration: one validated declaration per option (name, type, default, description, env
 * variable). A service declares its options once, loads them once in main, and passes the typed
 * result down. All bad options are reported together, each with its variable and what it expects.
 */
import { BrabantError } from './errors.ts';

interface OptionBase<T> {
  /** Environment variable that sets the option, e.g. BRABANT_REGION. */
  env: string;
  description: string;
  /** Absent means required. */
  default?: T;
  parse(raw: string): T;
  /** How the expected form is described in errors and docs, e.g. "an integer 1..65535". */
  expects: string;
  /** A password or key: its value is never echoed (errors say `***`). */
  secret?: boolean;
}

export type Option<T> = OptionBase<T>;

export type Spec = Record<string, Option<unknown>>;
export type ConfigOf<S extends Spec> = { readonly [K in keyof S]: S[K] extends Option<infer T> ? T : never };

class ParseError extends Error {}

export function str(o: {
  env: string;
  description: string;
  default?: string;
  secret?: boolean;
}): Option<string> {
  return {
    ...o,
    expects: 'a non-empty string',
    parse: (raw) => {
      if (raw.trim() === '') throw new ParseError('is empty');
      return raw;
    },
  };
}

export function int(o: {
  env: string;
  description: string;
  default?: number;
  min?: number;
  max?: number;
}): Option<number> {
  const min = o.min ?? Number.MIN_SAFE_INTEGER;
  const max = o.max ?? Number.MAX_SAFE_INTEGER;
  return {
    env: o.env,
    description: o.description,
    ...(o.default === undefined ? {} : { default: o.default }),
    expects: `an integer from ${min} to ${max}`,
    parse: (raw) => {
      if (!/^-?\d+$/.test(raw.trim())) throw new ParseError('is not an integer');
      const n = Number(raw);
      if (n < min || n > max) throw new ParseError(`is out of range`);
      return n;
    },
  };
}

export function bool(o: { env: string; description: string; default?: boolean }): Option<boolean> {
  return {
    ...o,
    expects: 'true or false',
    parse: (raw) => {
      const v = raw.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return true;
      if (['false', '0', 'no', 'off'].includes(v)) return false;
      throw new ParseError('is not a boolean');
    },
  };
}

export function oneOf<const V extends string>(o: {
  env: string;
  description: string;
  values: readonly V[];
  default?: V;
}): Option<V> {
  return {
    env: o.env,
    description: o.description,
    ...(o.default === undefined ? {} : { default: o.default }),
    expects: `one of ${o.values.join(', ')}`,
    parse: (raw) => {
      const v = raw.trim() as V;
      if (!o.values.includes(v)) throw new ParseError('is not an allowed value');
      return v;
    },
  };
}

/** Comma-separated list of non-empty strings. */
export function list(o: { env: string; description: string; default?: string[] }): Option<string[]> {
  return {
    ...o,
    expects: 'a comma-separated list',
    parse: (raw) => {
      const items = raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      if (items.length === 0) throw new ParseError('is an empty list');
      return items;
    },
  };
}

export function url(o: { env: string; description: string; default?: string }): Option<string> {
  return {
    ...o,
    expects: 'a URL',
    parse: (raw) => {
      try {
        return new URL(raw.trim()).toString().replace(/\/$/, '');
      } catch {
        throw new ParseError('is not a URL');
      }
    },
  };
}

export function loadConfig<S extends Spec>(
  spec: S,
  env: Record<string, string | undefined> = process.env,
): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, opt] of Object.entries(spec)) {
    const raw = env[opt.env];
    if (raw === undefined || raw === '') {
      if (opt.default === undefined)
        problems.push(`${opt.env} is required (${opt.description}); set it to ${opt.expects}`);
      else out[key] = opt.default;
      continue;
    }
    try {
      out[key] = opt.parse(raw);
    } catch (err) {
      if (!(err instanceof ParseError)) throw err;
      problems.push(
        `${opt.env}=${opt.secret ? '***' : JSON.stringify(raw)} ${err.message}; expected ${opt.expects}`,
      );
    }
  }
  if (problems.length > 0) {
    throw new BrabantError('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return out as ConfigOf<S>;
}

/**
 * The environment variables that give these options (the reverse of loadConfig): how the launcher
 * starts a service with options, and how a topology file's values become a service's defaults.
 * An option the spec does not declare is an error, not a variable silently ignored.
 */
export function envFor(spec: Spec, options: Record<string, unknown>, what: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    const opt = spec[key];
    if (opt === undefined)
      throw new BrabantError('CONFIG_INVALID', `${what} has no option '${key}' (see docs/configuration.md)`);
    env[opt.env] = Array.isArray(value) ? value.join(',') : String(value);
  }
  return env;
}

/** A Markdown table of the options, for docs and `--help`. */
export function describeConfig(spec: Spec): string {
  const rows = Object.values(spec).map(
    (o) =>
      `| \`${o.env}\` | ${o.expects} | ${o.default === undefined ? '(required)' : `\`${JSON.stringify(o.default)}\``} | ${o.description} |`,
  );
  return ['| variable | value | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The log level of every service (pino levels). */
export const logLevelOption = str({
  env: 'BRABANT_LOG_LEVEL',
  description: 'pino log level',
  default: 'info',
});

/** Options of every service with a /metrics endpoint, declared once: its port (per service) and address, and the log level. */
export function endpointOptions(defaultMetricsPort: number) {
  return {
    metricsPort: int({
      env: 'BRABANT_METRICS_PORT',
      description: 'Port of /metrics on 127.0.0.1; 0 picks a free port, -1 turns it off',
      default: defaultMetricsPort,
      min: -1,
      max: 65535,
    }),
    metricsHost: str({
      env: 'BRABANT_METRICS_HOST',
      description: 'Address /metrics listens on',
      default: '127.0.0.1',
    }),
    logLevel: logLevelOption,
  };
}

/**
 * The options every per-node service (capture, apply) has, declared once: which node, its
 * database, Kafka and the schema registry.
 */
export function nodeServiceOptions() {
  return {
    nodeId: str({
      env: 'BRABANT_NODE_ID',
      description: 'Id of this node, unique across all regions (e.g. vl-1)',
    }),
    pgUrl: str({
      env: 'BRABANT_PG_URL',
      description: 'postgres:// URL of this node’s database (the one captured, and applied to)',
    }),
    kafkaBrokers: list({
      env: 'BRABANT_KAFKA_BROKERS',
      description:
        'Kafka bootstrap servers (host:port list): capture produces to its region’s change topic there, apply reads the change topics it applies from there',
    }),
    registryUrl: url({
      env: 'BRABANT_REGISTRY_URL',
      description: 'Confluent-compatible schema registry URL',
    }),
  };
}
