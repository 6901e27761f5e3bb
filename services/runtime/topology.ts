/**
 * The topology file: one YAML file that describes a Brabant deployment for every service and
 * command, locally and in production — the regions (each with its Kafka cluster and its schema
 * registry), the nodes (each in one region, with its PostgreSQL URL) and the routers.
 *
 * Each field is declared once (FIELDS below: name, what it holds, whether it is required, its
 * parser); the reader checks the whole file against the declarations and reports every problem at
 * once, each with the file, the line and the fix (an unknown field, a duplicate node id, a node in
 * two regions, a missing value). Services derive their options from it (each service's config.ts
 * says how) and environment variables override what it says.
 *
 * ```yaml
 * peerStreams: direct            # apply reads each peer region's cluster (or: mirror)
 * regions:
 *   - name: vlaanderen
 *     kafka: [kafka-vl-1:9092, kafka-vl-2:9092]
 *     kafkaFromPeers: [kafka-vl.example:9094]   # optional: the listener other regions reach
 *     registry: http://registry-vl:8080/apis/ccompat/v7
 *   - name: wallonie
 *     kafka: [kafka-wa-1:9092]
 *     registry: http://registry-wa:8080/apis/ccompat/v7          # a follower: reads
 *     registryPrimary: http://registry-vl:8080/apis/ccompat/v7   # new schemas go here
 * nodes:
 *   - { id: vl-1, region: vlaanderen, postgres: "postgres://brabant@pg-vl-1:5432/app" }
 *   - { id: wa-1, region: wallonie, postgres: "postgres://brabant@pg-wa-1:5432/app" }
 * routers:
 *   - { region: vlaanderen, port: 6432, controlPort: 9403 }
 * ```
 */
import { readFileSync } from 'node:fs';
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from 'yaml';
import { BrabantError } from './errors.ts';
import {
  type Field,
  FieldError,
  hostPorts,
  NAME,
  NODE_ID,
  oneOf,
  port,
  text,
  urlOf,
} from './topology-parse.ts';
import {
  formatSecurity,
  SECURITY_FIELDS,
  type TopologySecurity,
  topologySecurity,
} from './topology-security.ts';

export type PeerStreams = 'direct' | 'mirror';

export interface TopologyRegion {
  name: string;
  /** Bootstrap servers of the region's Kafka cluster, as its own services reach it. */
  kafka: string[];
  /** Bootstrap servers other regions reach the cluster at (another listener); default `kafka`. */
  kafkaFromPeers: string[];
  /** The region's schema registry (Confluent API): ids are read here. */
  registry: string;
  /** Where new schemas are registered (the primary region's registry); default `registry`. */
  registryPrimary: string;
}

export interface TopologyNode {
  id: string;
  region: string;
  postgres: string;
  captureMetricsPort?: number;
  applyMetricsPort?: number;
}

export interface TopologyRouter {
  region: string;
  port: number;
  controlPort: number;
  database: string;
}

export interface Topology {
  /** The file it was read from (messages name it). */
  file: string;
  peerStreams: PeerStreams;
  regions: TopologyRegion[];
  nodes: TopologyNode[];
  routers: TopologyRouter[];
  /** TLS and credentials of every link (absent: plaintext, no authentication). */
  security?: TopologySecurity;
}

/** Every field of the file, declared once: the reader checks against these, the docs print them. */
export const FIELDS = {
  top: {
    peerStreams: {
      description:
        'How apply gets each peer region’s stream: `direct` (consumes that region’s cluster across the link, read_committed) or `mirror` (a local copy made by MirrorMaker 2)',
      expects: 'direct or mirror',
      required: false,
      parse: oneOf(['direct', 'mirror']),
    },
    regions: { description: 'The regions (datacenters)', expects: 'a list', required: true, parse: (v) => v },
    nodes: { description: 'The nodes', expects: 'a list', required: true, parse: (v) => v },
    routers: {
      description: 'The routers, one per region',
      expects: 'a list',
      required: false,
      parse: (v) => v,
    },
    security: {
      description:
        'TLS and credentials of every link (docs/security.md); absent: plaintext, no authentication',
      expects: 'a mapping',
      required: false,
      parse: (v) => v,
    },
  },
  security: SECURITY_FIELDS,
  region: {
    name: {
      description: 'Region name (its change topic is brabant.<name>.changes)',
      expects: 'lower-case letters, digits and _',
      required: true,
      parse: text(NAME),
    },
    kafka: {
      description: 'Bootstrap servers of the region’s Kafka cluster, as its own services reach it',
      expects: 'a list of host:port',
      required: true,
      parse: hostPorts,
    },
    kafkaFromPeers: {
      description:
        'Bootstrap servers other regions reach the cluster at (a listener of its own across the link); default: kafka',
      expects: 'a list of host:port',
      required: false,
      parse: hostPorts,
    },
    registry: {
      description: 'The region’s schema registry (Confluent API); apply reads ids there',
      expects: 'an http(s) URL',
      required: true,
      parse: urlOf(['http:', 'https:']),
    },
    registryPrimary: {
      description:
        'Where new schemas are registered, when the region’s registry is a read-only follower; default: registry',
      expects: 'an http(s) URL',
      required: false,
      parse: urlOf(['http:', 'https:']),
    },
  },
  node: {
    id: {
      description: 'Node id, unique across all regions',
      expects: 'letters, digits, - and _',
      required: true,
      parse: text(NODE_ID),
    },
    region: {
      description: 'The region the node is in',
      expects: 'a region name',
      required: true,
      parse: text(NAME),
    },
    postgres: {
      description: 'postgres:// URL of the node’s database (captured, and applied to)',
      expects: 'a postgres:// URL',
      required: true,
      parse: urlOf(['postgres:', 'postgresql:']),
    },
    captureMetricsPort: {
      description: 'Port of capture’s /metrics (brabant start)',
      expects: 'a port',
      required: false,
      parse: port,
    },
    applyMetricsPort: {
      description: 'Port of apply’s /metrics (brabant start)',
      expects: 'a port',
      required: false,
      parse: port,
    },
  },
  router: {
    region: {
      description: 'Region whose applications the router serves',
      expects: 'a region name',
      required: true,
      parse: text(NAME),
    },
    port: { description: 'Port applications connect to', expects: 'a port', required: false, parse: port },
    controlPort: { description: 'Port of the control API', expects: 'a port', required: false, parse: port },
    database: {
      description: 'Database name applications connect to on the router',
      expects: 'a name',
      required: false,
      parse: text(),
    },
  },
} satisfies Record<string, Record<string, Field>>;

type Section = keyof typeof FIELDS;

/** Reads and checks a topology file; throws CONFIG_INVALID listing every problem with its line. */
export function readTopology(file: string): Topology {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BrabantError(
      'CONFIG_INVALID',
      `topology file ${file} cannot be read (${(err as Error).message}); give its path with --topology FILE or BRABANT_TOPOLOGY`,
    );
  }
  return parseTopology(source, file);
}

/** Parses topology YAML (pure); `file` names it in messages. */
export function parseTopology(source: string, file: string): Topology {
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines });
  const problems: string[] = [];
  const at = (node: Node | null | undefined) =>
    node?.range ? `${file}:${lines.linePos(node.range[0]).line}` : file;
  for (const e of doc.errors)
    problems.push(`${file}:${e.linePos?.[0].line ?? '?'}: not valid YAML: ${e.message.split('\n')[0]}`);
  if (problems.length > 0) throw invalid(file, problems);

  /** The declared fields of a mapping, parsed; unknown and missing ones become problems. */
  const fields = (section: Section, node: unknown, where: string): Record<string, unknown> | undefined => {
    if (!isMap(node)) {
      problems.push(
        `${at(node as Node)}: ${where} must be a mapping of fields (${Object.keys(FIELDS[section]).join(', ')})`,
      );
      return undefined;
    }
    const decl: Record<string, Field> = FIELDS[section];
    const out: Record<string, unknown> = {};
    for (const item of (node as YAMLMap).items) {
      // an alias (*name) stands for the node its anchor (&name) marks, as in `kafka: *brokers`
      const pair = isAlias(item.value) ? { key: item.key, value: item.value.resolve(doc) } : item;
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const f = decl[key];
      if (f === undefined) {
        const near = Object.keys(decl).find((k) => similar(k, key));
        problems.push(
          `${at(pair.key as Node)}: unknown field '${key}' in ${where}; ${near ? `did you mean '${near}'? ` : ''}` +
            `the fields are ${Object.keys(decl).join(', ')} (fix the name or remove the line)`,
        );
        continue;
      }
      const raw = isScalar(pair.value) ? pair.value.value : (pair.value as Node | null)?.toJSON?.();
      if (raw === null || raw === undefined) {
        problems.push(
          `${at(pair.key as Node)}: ${key} of ${where} has no value; give ${f.expects} (${f.description})`,
        );
        continue;
      }
      if (section === 'top' && ['regions', 'nodes', 'routers', 'security'].includes(key)) {
        out[key] = pair.value;
        continue;
      }
      try {
        out[key] = f.parse(raw);
      } catch (err) {
        if (!(err instanceof FieldError)) throw err;
        problems.push(`${at(pair.value as Node)}: ${key} of ${where} ${err.message}; expected ${f.expects}`);
      }
    }
    for (const [key, f] of Object.entries(decl)) {
      if (f.required && !(key in out) && !(node as YAMLMap).has(key))
        problems.push(
          `${at(node as Node)}: ${where} has no ${key}; add \`${key}:\` with ${f.expects} (${f.description})`,
        );
    }
    return out;
  };
  const list = (value: unknown, what: string): Node[] => {
    if (value === undefined) return [];
    if (!isSeq(value)) {
      problems.push(`${at(value as Node)}: ${what} must be a list (lines starting with '- ')`);
      return [];
    }
    return value.items as Node[];
  };

  const top = fields('top', doc.contents, 'the topology') ?? {};
  const regions: TopologyRegion[] = [];
  const regionLine = new Map<string, string>();
  for (const item of list(top.regions, 'regions')) {
    const r = fields('region', item, 'a region');
    if (r === undefined || typeof r.name !== 'string') continue;
    const name = r.name;
    if (regionLine.has(name)) {
      problems.push(
        `${at(item)}: region '${name}' is declared twice (first at ${regionLine.get(name)}); keep one`,
      );
      continue;
    }
    regionLine.set(name, at(item));
    if (r.kafka === undefined || r.registry === undefined) continue;
    const kafka = r.kafka as string[];
    const registry = r.registry as string;
    regions.push({
      name,
      kafka,
      kafkaFromPeers: (r.kafkaFromPeers as string[] | undefined) ?? kafka,
      registry,
      registryPrimary: (r.registryPrimary as string | undefined) ?? registry,
    });
  }
  if (regionLine.size === 0 && top.regions !== undefined)
    problems.push(`${at(top.regions as Node)}: regions is empty; declare at least one region`);

  const nodes: TopologyNode[] = [];
  const nodeAt = new Map<string, { line: string; region: string }>();
  for (const item of list(top.nodes, 'nodes')) {
    const n = fields('node', item, 'a node');
    if (n === undefined || typeof n.id !== 'string') continue;
    const id = n.id;
    const region = n.region as string | undefined;
    const first = nodeAt.get(id);
    if (first !== undefined) {
      problems.push(
        first.region !== region
          ? `${at(item)}: node '${id}' is in two regions, ${first.region} (at ${first.line}) and ${region}; a node belongs to one region: remove one entry, or give the other node an id of its own`
          : `${at(item)}: node id '${id}' is declared twice (first at ${first.line}); node ids are unique across all regions: rename or remove one`,
      );
      continue;
    }
    nodeAt.set(id, { line: at(item), region: region ?? '?' });
    if (region !== undefined && !regionLine.has(region)) {
      problems.push(
        `${at(item)}: node '${id}' is in region '${region}', which the regions list does not declare (${[...regionLine.keys()].join(', ') || 'none'})`,
      );
      continue;
    }
    if (region === undefined || n.postgres === undefined) continue;
    nodes.push({
      id,
      region,
      postgres: n.postgres as string,
      ...(n.captureMetricsPort === undefined ? {} : { captureMetricsPort: n.captureMetricsPort as number }),
      ...(n.applyMetricsPort === undefined ? {} : { applyMetricsPort: n.applyMetricsPort as number }),
    });
  }
  if (nodeAt.size === 0 && top.nodes !== undefined)
    problems.push(`${at(top.nodes as Node)}: nodes is empty; declare at least one node`);

  const routers: TopologyRouter[] = [];
  const routerAt = new Map<string, string>();
  for (const item of list(top.routers, 'routers')) {
    const r = fields('router', item, 'a router');
    if (r === undefined || typeof r.region !== 'string') continue;
    if (!regionLine.has(r.region)) {
      problems.push(`${at(item)}: router of region '${r.region}', which the regions list does not declare`);
      continue;
    }
    if (routerAt.has(r.region)) {
      problems.push(
        `${at(item)}: region '${r.region}' has a second router (first at ${routerAt.get(r.region)}); keep one`,
      );
      continue;
    }
    routerAt.set(r.region, at(item));
    routers.push({
      region: r.region,
      port: (r.port as number | undefined) ?? 6432,
      controlPort: (r.controlPort as number | undefined) ?? 9403,
      database: (r.database as string | undefined) ?? 'app',
    });
  }
  let security: TopologySecurity | undefined;
  if (top.security !== undefined) {
    const sec = fields('security', top.security, 'the security section');
    if (sec !== undefined && sec.ca !== undefined && sec.secrets !== undefined) {
      security = topologySecurity(sec, file);
      if ((security.registryCertificate === undefined) !== (security.registryKey === undefined))
        problems.push(
          `${at(top.security as Node)}: registryCertificate and registryKey of the security section go together: give both or neither`,
        );
    }
  }
  if (problems.length > 0) throw invalid(file, problems);
  return {
    file,
    peerStreams: (top.peerStreams as PeerStreams | undefined) ?? 'direct',
    regions,
    nodes,
    routers,
    ...(security === undefined ? {} : { security }),
  };
}

function invalid(file: string, problems: string[]): BrabantError {
  return new BrabantError(
    'CONFIG_INVALID',
    `topology file ${file} is invalid:\n  - ${problems.join('\n  - ')}`,
  );
}

/** A likely misspelling: at most two letters inserted, removed or changed (edit distance, case-blind). */
function similar(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const row = [i];
    for (let j = 1; j <= y.length; j++)
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[y.length]! <= 2;
}

export function regionOf(t: Topology, name: string): TopologyRegion {
  const r = t.regions.find((x) => x.name === name);
  if (r === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `topology ${t.file} has no region '${name}' (it has ${t.regions.map((x) => x.name).join(', ')})`,
    );
  return r;
}

export function nodeOf(t: Topology, id: string): TopologyNode {
  const n = t.nodes.find((x) => x.id === id);
  if (n === undefined)
    throw new BrabantError(
      'CONFIG_INVALID',
      `topology ${t.file} has no node '${id}' (it has ${t.nodes.map((x) => x.id).join(', ')}); fix --node or BRABANT_NODE_ID`,
    );
  return n;
}

/** Whether two regions share one Kafka cluster (the shared layout): the same bootstrap servers. */
export function sameCluster(a: TopologyRegion, b: TopologyRegion): boolean {
  const key = (r: TopologyRegion) => [...r.kafka].sort().join(',');
  return key(a) === key(b);
}

/** The topology as YAML (what `brabant up` writes), with a comment saying what made it. */
export function formatTopology(
  t: Omit<Topology, 'file'>,
  header: string,
  relative: (path: string) => string = (p) => p,
): string {
  const q = (s: string) => JSON.stringify(s);
  const out = [
    ...header.split('\n').map((l) => `# ${l}`.trimEnd()),
    `peerStreams: ${t.peerStreams}`,
    'regions:',
  ];
  for (const r of t.regions) {
    out.push(`  - name: ${r.name}`, `    kafka: [${r.kafka.map(q).join(', ')}]`);
    if (r.kafkaFromPeers.join() !== r.kafka.join())
      out.push(`    kafkaFromPeers: [${r.kafkaFromPeers.map(q).join(', ')}]`);
    out.push(`    registry: ${q(r.registry)}`);
    if (r.registryPrimary !== r.registry) out.push(`    registryPrimary: ${q(r.registryPrimary)}`);
  }
  out.push('nodes:');
  for (const n of t.nodes) {
    out.push(`  - id: ${n.id}`, `    region: ${n.region}`, `    postgres: ${q(n.postgres)}`);
    if (n.captureMetricsPort !== undefined) out.push(`    captureMetricsPort: ${n.captureMetricsPort}`);
    if (n.applyMetricsPort !== undefined) out.push(`    applyMetricsPort: ${n.applyMetricsPort}`);
  }
  if (t.routers.length > 0) {
    out.push('routers:');
    for (const r of t.routers)
      out.push(
        `  - region: ${r.region}`,
        `    port: ${r.port}`,
        `    controlPort: ${r.controlPort}`,
        `    database: ${r.database}`,
      );
  }
  if (t.security !== undefined) out.push(...formatSecurity(t.security, relative));
  return `${out.join('\n')}\n`;
}

/** A Markdown table of the file's fields, for docs/configuration.md. */
export function describeTopologyFields(): string {
  const rows: string[] = ['| field | value | required | meaning |', '| --- | --- | --- | --- |'];
  const prefix: Record<Section, string> = {
    top: '',
    region: 'regions[].',
    node: 'nodes[].',
    router: 'routers[].',
    security: 'security.',
  };
  for (const [section, decl] of Object.entries(FIELDS) as [Section, Record<string, Field>][])
    for (const [name, f] of Object.entries(decl))
      rows.push(
        `| \`${prefix[section]}${name}\` | ${f.expects} | ${f.required ? 'yes' : 'no'} | ${f.description} |`,
      );
  return rows.join('\n');
}
