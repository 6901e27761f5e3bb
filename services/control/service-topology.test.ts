/** What each service reads from a topology file, and that the environment overrides it. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyConfig, applyTopology } from '../apply/config.ts';
import { applySources } from '../apply/sources.ts';
import { captureConfig, captureTopology } from '../capture/config.ts';
import { routerConfig, routerTopology } from '../router/config.ts';
import { loadServiceConfig } from '../runtime/service-config.ts';
import { readTopology } from '../runtime/topology.ts';
import { routerUrl } from './router-commands.ts';

const TOPOLOGY = (peerStreams: string, waKafka = '127.0.0.1:9201') => `peerStreams: ${peerStreams}
regions:
  - name: vlaanderen
    kafka: [127.0.0.1:9101]
    kafkaFromPeers: [127.0.0.1:9111]
    registry: http://127.0.0.1:8101/apis/ccompat/v7
  - name: wallonie
    kafka: [${waKafka}]
    kafkaFromPeers: [127.0.0.1:9211]
    registry: http://127.0.0.1:8201/apis/ccompat/v7
    registryPrimary: http://127.0.0.1:8111/apis/ccompat/v7
nodes:
  - { id: vl-1, region: vlaanderen, postgres: "postgres://postgres@127.0.0.1:5101/app" }
  - { id: wa-1, region: wallonie, postgres: "postgres://postgres@127.0.0.1:5201/app", applyMetricsPort: 9999 }
routers:
  - { region: wallonie, port: 6433 }
`;

function file(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'brabant-topology-')), 'topology.yaml');
  writeFileSync(f, text);
  return f;
}

describe('services configured from a topology file', () => {
  it('capture: its node, region, cluster and registries', () => {
    const c = loadServiceConfig(
      'capture',
      captureConfig,
      captureTopology,
      ['--topology', file(TOPOLOGY('direct')), '--node', 'wa-1'],
      {},
    );
    expect(c).toMatchObject({
      nodeId: 'wa-1',
      region: 'wallonie',
      pgUrl: 'postgres://postgres@127.0.0.1:5201/app',
      kafkaBrokers: ['127.0.0.1:9201'],
      registryUrl: 'http://127.0.0.1:8201/apis/ccompat/v7',
      registryPrimaryUrl: 'http://127.0.0.1:8111/apis/ccompat/v7',
    });
  });

  it('apply with direct peer streams reads the peer region’s cluster at the address it gives peers', () => {
    const c = loadServiceConfig(
      'apply',
      applyConfig,
      applyTopology,
      ['--topology', file(TOPOLOGY('direct')), '--node', 'wa-1'],
      {},
    );
    expect(c.metricsPort).toBe(9999);
    expect(applySources(c)).toEqual([
      { brokers: ['127.0.0.1:9201'], topics: ['brabant.wallonie.changes'] },
      { brokers: ['127.0.0.1:9111'], topics: ['brabant.vlaanderen.changes'] },
    ]);
  });

  it('apply with mirrored streams, or on a shared cluster, reads every topic locally', () => {
    for (const [mode, waKafka] of [
      ['mirror', '127.0.0.1:9201'],
      ['direct', '127.0.0.1:9101'],
    ] as const) {
      const c = loadServiceConfig(
        'apply',
        applyConfig,
        applyTopology,
        ['--topology', file(TOPOLOGY(mode, waKafka)), '--node', 'wa-1'],
        {},
      );
      expect(applySources(c)).toEqual([
        { brokers: [waKafka], topics: ['brabant.vlaanderen.changes', 'brabant.wallonie.changes'] },
      ]);
    }
  });

  it('router: its region’s entry, its own nodes first', () => {
    const c = loadServiceConfig(
      'router',
      routerConfig,
      routerTopology,
      ['--topology', file(TOPOLOGY('direct')), '--region', 'wallonie'],
      {},
    );
    expect(c).toMatchObject({ region: 'wallonie', port: 6433, controlPort: 9403, database: 'app' });
    expect(c.nodes).toEqual([
      'wa-1@wallonie=postgres://postgres@127.0.0.1:5201/app',
      'vl-1@vlaanderen=postgres://postgres@127.0.0.1:5101/app',
    ]);
  });

  it('router on a secured topology: its own role over verify-full TLS, its password file, TLS and SCRAM of clients', () => {
    const f = file(
      `${TOPOLOGY('direct')}security:\n  ca: secrets/ca.pem\n  secrets: secrets\n  routerCertificate: secrets/server.pem\n  routerKey: secrets/server.key\n`,
    );
    const dir = f.slice(0, -'/topology.yaml'.length);
    const c = loadServiceConfig(
      'router',
      routerConfig,
      routerTopology,
      ['--topology', f, '--region', 'wallonie'],
      {},
    );
    const ca = encodeURIComponent(`${dir}/secrets/ca.pem`);
    expect(c.nodes).toEqual([
      `wa-1@wallonie=postgres://brabant_router@127.0.0.1:5201/app?sslmode=verify-full&sslrootcert=${ca}`,
      `vl-1@vlaanderen=postgres://brabant_router@127.0.0.1:5101/app?sslmode=verify-full&sslrootcert=${ca}`,
    ]);
    expect(c).toMatchObject({
      nodePasswordFile: `${dir}/secrets/postgres-routers-brabant_router`,
      tls: 'require',
      tlsCert: `${dir}/secrets/server.pem`,
      tlsKey: `${dir}/secrets/server.key`,
      auth: 'scram',
      authQuery: 'select rolname, rolpassword from brabant_auth.lookup($1)',
    });
  });

  it('environment variables override the file, and BRABANT_TOPOLOGY names it', () => {
    const c = loadServiceConfig('capture', captureConfig, captureTopology, [], {
      BRABANT_TOPOLOGY: file(TOPOLOGY('direct')),
      BRABANT_NODE_ID: 'vl-1',
      BRABANT_KAFKA_BROKERS: '10.9.9.9:9092',
    });
    expect(c.kafkaBrokers).toEqual(['10.9.9.9:9092']);
    expect(c.region).toBe('vlaanderen');
  });

  it('says which node to name, and refuses one the file does not have', () => {
    const f = file(TOPOLOGY('direct'));
    expect(() => loadServiceConfig('apply', applyConfig, applyTopology, ['--topology', f], {})).toThrow(
      /runs for one node: say which with --node \(or BRABANT_NODE_ID\), one of vl-1, wa-1/,
    );
    expect(() =>
      loadServiceConfig('apply', applyConfig, applyTopology, ['--topology', f, '--node', 'br-1'], {}),
    ).toThrow(/has no node 'br-1' \(it has vl-1, wa-1\)/);
    expect(() =>
      loadServiceConfig(
        'router',
        routerConfig,
        routerTopology,
        ['--topology', f, '--region', 'vlaanderen'],
        {},
      ),
    ).toThrow(/declares no router for region vlaanderen/);
  });

  it('switchover and maintenance find a region’s router in the topology', () => {
    const topology = readTopology(file(TOPOLOGY('direct')));
    expect(routerUrl({ region: 'wallonie', topology }, {})).toBe('http://127.0.0.1:9403');
    expect(routerUrl({ region: 'wallonie', topology }, { BRABANT_ROUTER_URLS: 'wallonie=http://r:1' })).toBe(
      'http://r:1',
    );
    expect(() => routerUrl({ region: 'vlaanderen', topology }, {})).toThrow(
      /no router URL for region vlaanderen/,
    );
  });
});
