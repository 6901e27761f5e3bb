/**
 * A node's Kafka, set up by `brabant node init` on a secured topology (I/O): on each cluster its
 * services use — its region's, and in the direct layout every peer region's that its apply reads
 * across the link — the topics with their declared settings, the services' SCRAM users and their
 * ACLs (kafka-access.ts), as the cluster's admin.
 */
import { readFileSync } from 'node:fs';
import { Kafka, logLevel, type SASLOptions } from 'kafkajs';
import { setScramUsers } from '../../infra/kafka/scram-users.ts';
import {
  CHANGE_TOPIC_DEFAULTS,
  changeTopic,
  changeTopicSettings,
  sideTopicSettings,
  type TopicSettings,
} from '../protocol/topics.ts';
import { createLogger } from '../runtime/log.ts';
import { readSecretFile } from '../runtime/security.ts';
import { nodeOf, regionOf, sameCluster, type Topology, type TopologyRegion } from '../runtime/topology.ts';
import { kafkaUser, secretFile, type TopologySecurity } from '../runtime/topology-security.ts';
import { type AclRule, applyAcls, captureAcls, createAcls, createTopics } from './kafka-access.ts';

export interface ClusterGrant {
  /** The region whose cluster it is (its admin's password is per region). */
  region: TopologyRegion;
  /** How this node's services reach it. */
  bootstrap: string[];
  topics: TopicSettings[];
  users: string[];
  acls: AclRule[];
}

/** What node `nodeId` needs on each cluster (pure). */
export function clusterGrants(t: Topology, nodeId: string): ClusterGrant[] {
  const n = nodeOf(t, nodeId);
  const own = regionOf(t, n.region);
  const capture = kafkaUser('capture', nodeId);
  const apply = kafkaUser('apply', nodeId);
  const grants: ClusterGrant[] = [];
  const clusterOf = (r: TopologyRegion) => grants.find((g) => sameCluster(g.region, r));
  for (const r of t.regions) {
    const local = r === own || sameCluster(r, own);
    // with mirrored peer streams every region's topic is read from the own cluster
    const readHere = local || t.peerStreams === 'direct';
    if (!readHere) continue;
    const home = local ? own : r;
    let g = clusterOf(home);
    if (g === undefined) {
      g = { region: home, bootstrap: local ? own.kafka : r.kafkaFromPeers, topics: [], users: [], acls: [] };
      grants.push(g);
    }
    const topic = changeTopic(r.name);
    if (!g.topics.some((x) => x.topic === topic))
      g.topics.push(changeTopicSettings(topic, CHANGE_TOPIC_DEFAULTS));
  }
  const home = clusterOf(own)!;
  if (t.peerStreams === 'mirror')
    for (const r of t.regions)
      if (!home.topics.some((x) => x.topic === changeTopic(r.name)))
        home.topics.push(changeTopicSettings(changeTopic(r.name)));
  home.topics.push(...sideTopicSettings());
  home.users.push(capture);
  home.acls.push(...captureAcls({ user: capture, nodeId, topic: changeTopic(own.name) }));
  for (const g of grants) {
    g.users.push(apply);
    const topics = g.topics.map((x) => x.topic).filter((x) => x.endsWith('.changes'));
    g.acls.push(...applyAcls({ user: apply, nodeId, topics, local: g === home }));
  }
  return grants;
}

/** kafkajs options of the cluster admin (node init here; join and part: membership/cluster-view.ts). */
export function adminSasl(sec: TopologySecurity, region: string): SASLOptions {
  return {
    mechanism: sec.kafkaSasl,
    username: sec.kafkaAdmin,
    password: readSecretFile(
      secretFile(sec, { kafka: sec.kafkaAdmin, region }),
      "the Kafka admin's password",
    ),
  } as SASLOptions;
}

export async function grantNodeKafka(
  t: Topology,
  nodeId: string,
  say: (m: string) => void,
): Promise<{ users: string[]; acls: number }> {
  const sec = t.security!;
  const log = createLogger('node-init', 'warn');
  const ca = readFileSync(sec.ca, 'utf8');
  let acls = 0;
  const users = new Set<string>();
  for (const g of clusterGrants(t, nodeId)) {
    const sasl = adminSasl(sec, g.region.name);
    // kafkajs itself (the CLI loads it before runtime/kafkajs-patch.ts; a few admin requests only)
    const kafka = new Kafka({
      brokers: g.bootstrap,
      clientId: 'brabant-node-init',
      ssl: { ca: [ca] },
      sasl,
      logLevel: logLevel.NOTHING,
      retry: { retries: 3 },
    });
    const admin = kafka.admin();
    await admin.connect();
    try {
      await createTopics(admin, g.topics, log);
      await setScramUsers({
        bootstrap: g.bootstrap,
        ca: sec.ca,
        mechanism: sec.kafkaSasl === 'scram-sha-512' ? 'SCRAM-SHA-512' : 'SCRAM-SHA-256',
        admin: { user: sec.kafkaAdmin, password: (sasl as { password: string }).password },
        users: g.users.map((u) => ({
          user: u,
          password: readSecretFile(secretFile(sec, { kafka: u }), `the password of ${u}`),
        })),
        progress: say,
      });
      acls += await createAcls(admin, g.acls);
    } finally {
      await admin.disconnect().catch(() => {});
    }
    for (const u of g.users) users.add(u);
    say(
      `Kafka ${g.bootstrap.join(',')}: topics ${g.topics.map((x) => x.topic).join(', ')}; users ${g.users.join(', ')} with their ACLs`,
    );
  }
  return { users: [...users], acls };
}
