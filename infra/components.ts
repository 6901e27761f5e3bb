/**
 * Starting one part of the local stack from its recorded spec (stack-state.ts), the same way the
 * first time (`brabant up`) and every time after (`--reuse`, `brabant restart`). Returns once the
 * part really answers.
 */

import { readSecretFile } from '../services/runtime/security.ts';
import { ensureKafkaJars, startKafka } from './kafka/kafka.ts';
import { ensureMirrorJars, startMirror } from './kafka/mirror.ts';
import { startLink } from './link/process.ts';
import type { Progress } from './maven.ts';
import { ensureMajor } from './postgres/majors.ts';
import { initNode, isInitialized, startNode } from './postgres/postgres.ts';
import type { ManagedProcess } from './processes.ts';
import { ensureRegistryBuilt, startRegistry } from './registry/registry.ts';
import { ensureRegistryDatabase, registryDbSettings } from './registry/registry-db.ts';
import { ensureStandby } from './registry/registry-standby.ts';
import type { ComponentSpec } from './stack-state.ts';

export interface StartedComponent {
  process: ManagedProcess;
  /** How clients reach it: bootstrap host:port, postgres:// URL or the registry's API URL. */
  address: string;
}

export async function startComponent(c: ComponentSpec, progress: Progress): Promise<StartedComponent> {
  switch (c.kind) {
    case 'kafka': {
      await ensureKafkaJars(progress);
      const k = await startKafka(c.spec);
      return { process: k.process, address: k.bootstrap };
    }
    case 'mirror': {
      await ensureMirrorJars(progress);
      const m = await startMirror(c.spec);
      return { process: m, address: c.spec.brokers.join(',') };
    }
    case 'postgres': {
      if (c.spec.major !== undefined) ensureMajor(c.spec.major, progress);
      if (!isInitialized(c.spec.dataDir)) {
        progress(`initdb of node ${c.spec.name}`);
        initNode(c.spec);
      }
      const n = await startNode(c.spec);
      return { process: n.process, address: n.url };
    }
    case 'registry-db': {
      if (!isInitialized(c.spec.dataDir)) {
        progress('initdb of the registry database');
        initNode(c.spec, registryDbSettings(c.spec.port));
      }
      const n = await startNode(c.spec);
      try {
        const sec = c.spec.security;
        const owner = c.spec.owner;
        await ensureRegistryDatabase(n.url, {
          ...(sec === undefined
            ? {}
            : { adminPassword: readSecretFile(sec.adminPasswordFile, 'the admin password') }),
          ...(owner === undefined
            ? {}
            : {
                owner: {
                  role: owner.role,
                  password: readSecretFile(owner.passwordFile, 'the registry role'),
                },
              }),
        });
      } catch (err) {
        await n.process.stop();
        throw err;
      }
      return { process: n.process, address: n.url };
    }
    case 'registry-standby': {
      if (!isInitialized(c.spec.dataDir))
        progress(`copying the registry database into ${c.spec.name} (pg_basebackup)`);
      ensureStandby(c.spec);
      const n = await startNode(c.spec);
      return { process: n.process, address: n.url };
    }
    case 'link': {
      const l = await startLink(c.spec);
      return { process: l.process, address: l.url };
    }
    case 'registry': {
      const distDir = await ensureRegistryBuilt(progress);
      const r = await startRegistry({ ...c.spec, distDir });
      return { process: r.process, address: r.url };
    }
    default:
      return c satisfies never;
  }
}
