import { describe, expect, it } from 'vitest';
import { formatTopology, parseTopology } from './topology.ts';

const GOOD = `peerStreams: direct
regions:
  - name: vlaanderen
    kafka: [10.0.1.1:9092, 10.0.1.2:9092]
    registry: http://registry-vl:8080/apis/ccompat/v7
  - name: wallonie
    kafka: [10.0.2.1:9092]
    kafkaFromPeers: [kafka-wa.example:9094]
    registry: http://registry-wa:8080/apis/ccompat/v7
    registryPrimary: http://registry-vl:8080/apis/ccompat/v7
nodes:
  - id: vl-1
    region: vlaanderen
    postgres: postgres://brabant@pg-vl-1:5432/app
  - id: wa-1
    region: wallonie
    postgres: postgres://brabant@pg-wa-1:5432/app
routers:
  - region: vlaanderen
    port: 6432
`;

/** The message of the error parsing `yaml` throws. */
function problems(yaml: string): string {
  try {
    parseTopology(yaml, 'topo.yaml');
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected the topology to be refused');
}

describe('topology file', () => {
  it('reads regions, nodes and routers with their defaults', () => {
    const t = parseTopology(GOOD, 'topo.yaml');
    expect(t.peerStreams).toBe('direct');
    expect(t.regions[0]).toEqual({
      name: 'vlaanderen',
      kafka: ['10.0.1.1:9092', '10.0.1.2:9092'],
      kafkaFromPeers: ['10.0.1.1:9092', '10.0.1.2:9092'],
      registry: 'http://registry-vl:8080/apis/ccompat/v7',
      registryPrimary: 'http://registry-vl:8080/apis/ccompat/v7',
    });
    expect(t.regions[1]!.kafkaFromPeers).toEqual(['kafka-wa.example:9094']);
    expect(t.nodes.map((n) => `${n.id}@${n.region}`)).toEqual(['vl-1@vlaanderen', 'wa-1@wallonie']);
    expect(t.routers).toEqual([{ region: 'vlaanderen', port: 6432, controlPort: 9403, database: 'app' }]);
  });

  it('reads an alias (*name) as the value its anchor (&name) marks', () => {
    const yaml = GOOD.replace(
      'kafka: [10.0.1.1:9092, 10.0.1.2:9092]',
      'kafka: &shared [10.0.1.1:9092, 10.0.1.2:9092]',
    )
      .replace('kafka: [10.0.2.1:9092]', 'kafka: *shared')
      .replace('kafkaFromPeers: [kafka-wa.example:9094]', 'kafkaFromPeers: *shared');
    const t = parseTopology(yaml, 'topo.yaml');
    expect(t.regions[1]!.kafka).toEqual(['10.0.1.1:9092', '10.0.1.2:9092']);
    expect(t.regions[1]!.kafkaFromPeers).toEqual(['10.0.1.1:9092', '10.0.1.2:9092']);
  });

  it('writes what it reads', () => {
    const t = parseTopology(GOOD, 'topo.yaml');
    const again = parseTopology(formatTopology(t, 'made by a test'), 'again.yaml');
    expect({ ...again, file: 'topo.yaml' }).toEqual(t);
  });

  it('names an unknown field with its line, a likely spelling and the fields there are', () => {
    const msg = problems(
      GOOD.replace('    registry: http://registry-vl', '    regsitry: http://registry-vl'),
    );
    expect(msg).toMatch(/^CONFIG_INVALID|topology file topo\.yaml is invalid/);
    expect(msg).toContain("topo.yaml:5: unknown field 'regsitry' in a region; did you mean 'registry'?");
    expect(msg).toContain('the fields are name, kafka, kafkaFromPeers, registry, registryPrimary');
    // and the field it lacks now, on the region's line
    expect(msg).toContain('topo.yaml:3: a region has no registry');
  });

  it('refuses a node id declared twice', () => {
    const msg = problems(
      `${GOOD.replace('routers:\n  - region: vlaanderen\n    port: 6432\n', '')}  - id: vl-1\n    region: vlaanderen\n    postgres: postgres://x@h/app\n`,
    );
    expect(msg).toContain("topo.yaml:18: node id 'vl-1' is declared twice (first at topo.yaml:12)");
  });

  it('refuses a node in two regions', () => {
    const msg = problems(
      `${GOOD.replace('routers:\n  - region: vlaanderen\n    port: 6432\n', '')}  - id: vl-1\n    region: wallonie\n    postgres: postgres://x@h/app\n`,
    );
    expect(msg).toContain(
      "topo.yaml:18: node 'vl-1' is in two regions, vlaanderen (at topo.yaml:12) and wallonie; a node belongs to one region",
    );
  });

  it('reports every missing or bad value at once', () => {
    const msg = problems(`regions:
  - name: Vlaanderen
    kafka: [not-a-host-port]
    registry: ftp://x
nodes:
  - id: vl-1
    region: brussel
    postgres:
routers:
  - region: wallonie
`);
    expect(msg).toContain("topo.yaml:2: name of a region 'Vlaanderen' has the wrong form");
    expect(msg).toContain(
      "topo.yaml:3: kafka of a region 'not-a-host-port' has the wrong form; expected a list of host:port",
    );
    expect(msg).toContain("topo.yaml:4: registry of a region 'ftp://x' does not start with http://");
    expect(msg).toContain('topo.yaml:8: postgres of a node has no value; give a postgres:// URL');
    expect(msg).toContain(
      "topo.yaml:10: router of region 'wallonie', which the regions list does not declare",
    );
  });

  it('says where YAML itself is broken', () => {
    expect(problems('regions: [\n  name: x\n')).toMatch(/topo\.yaml:\d+: not valid YAML/);
  });

  it('refuses a file without regions or nodes', () => {
    const msg = problems('peerStreams: sideways\n');
    expect(msg).toContain(
      "topo.yaml:1: peerStreams of the topology 'sideways' is not allowed; expected direct or mirror",
    );
    expect(msg).toContain('the topology has no regions');
    expect(msg).toContain('the topology has no nodes');
  });
});
