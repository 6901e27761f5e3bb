/**
 * What a node's services may do in Kafka, as ACLs (the plan is pure; `brabant node init` creates
 * the users and grants it as the cluster's admin). Kafka's StandardAuthorizer refuses anything no
 * ACL allows, so each service gets exactly this and nothing else:
 *
 *   capture  its region's change topic: WRITE (and READ: at start it reads back the last event it
 *            committed), DESCRIBE, DESCRIBE_CONFIGS (checks the topic's settings); the dead-letter
 *            topic: WRITE, DESCRIBE, DESCRIBE_CONFIGS; its own transactional id: WRITE, DESCRIBE;
 *            the read-back consumer groups named after its node (prefix): READ.
 *   apply    each change topic it applies: READ, DESCRIBE, DESCRIBE_CONFIGS; its own consumer
 *            group: READ, DESCRIBE; the conflict and dead-letter topics: WRITE, DESCRIBE,
 *            DESCRIBE_CONFIGS.
 *
 * Neither may create or delete topics, alter configs, or touch another node's transactional id or
 * group: node init creates the topics with their declared settings.
 */
import type { Admin } from 'kafkajs';
import { applyGroupId, captureTransactionalId, readbackGroupPrefix } from '../protocol/names.ts';
import { CONFLICTS_TOPIC, DEAD_LETTER_TOPIC, ensureTopic, type TopicSettings } from '../protocol/topics.ts';
import { BrabantError } from '../runtime/errors.ts';
import {
  AclOperationTypes,
  AclPermissionTypes,
  AclResourceTypes,
  ResourcePatternTypes,
} from '../runtime/kafka.ts';
import type { Logger } from '../runtime/log.ts';

type Resource = 'topic' | 'group' | 'transactional-id';
type Operation = 'read' | 'write' | 'describe' | 'describe-configs';

/** One ALLOW rule: `principal` may do `operations` on a resource (its exact name, or a name prefix). */
export interface AclRule {
  principal: string;
  resource: Resource;
  name: string;
  pattern: 'literal' | 'prefixed';
  operations: Operation[];
}

export interface CaptureGrant {
  user: string;
  nodeId: string;
  topic: string;
}

export interface ApplyGrant {
  user: string;
  nodeId: string;
  /** The change topics it applies on this cluster. */
  topics: string[];
  /** Whether the cluster is its own region's (where it writes the conflict and dead-letter topics). */
  local: boolean;
  groupId?: string;
}

const principal = (user: string) => `User:${user}`;

export function captureAcls(g: CaptureGrant): AclRule[] {
  const p = principal(g.user);
  return [
    {
      principal: p,
      resource: 'topic',
      name: g.topic,
      pattern: 'literal',
      operations: ['write', 'read', 'describe', 'describe-configs'],
    },
    {
      principal: p,
      resource: 'topic',
      name: DEAD_LETTER_TOPIC,
      pattern: 'literal',
      operations: ['write', 'describe', 'describe-configs'],
    },
    {
      principal: p,
      resource: 'transactional-id',
      name: captureTransactionalId(g.nodeId),
      pattern: 'literal',
      operations: ['write', 'describe'],
    },
    {
      principal: p,
      resource: 'group',
      name: readbackGroupPrefix(g.nodeId),
      pattern: 'prefixed',
      operations: ['read'],
    },
  ];
}

export function applyAcls(g: ApplyGrant): AclRule[] {
  const p = principal(g.user);
  return [
    ...g.topics.map(
      (t): AclRule => ({
        principal: p,
        resource: 'topic',
        name: t,
        pattern: 'literal',
        operations: ['read', 'describe', 'describe-configs'],
      }),
    ),
    {
      principal: p,
      resource: 'group',
      name: g.groupId ?? applyGroupId(g.nodeId),
      pattern: 'literal',
      operations: ['read', 'describe'],
    },
    // reading back its own node's events (a database restored or rebuilt: apply/own-stream.ts)
    {
      principal: p,
      resource: 'group',
      name: readbackGroupPrefix(g.nodeId),
      pattern: 'prefixed',
      operations: ['read'],
    },
    ...(g.local
      ? [CONFLICTS_TOPIC, DEAD_LETTER_TOPIC].map(
          (t): AclRule => ({
            principal: p,
            resource: 'topic',
            name: t,
            pattern: 'literal',
            operations: ['write', 'describe', 'describe-configs'],
          }),
        )
      : []),
  ];
}

const RESOURCE = {
  topic: AclResourceTypes.TOPIC,
  group: AclResourceTypes.GROUP,
  'transactional-id': AclResourceTypes.TRANSACTIONAL_ID,
} as const;

const OPERATION = {
  read: AclOperationTypes.READ,
  write: AclOperationTypes.WRITE,
  describe: AclOperationTypes.DESCRIBE,
  'describe-configs': AclOperationTypes.DESCRIBE_CONFIGS,
} as const;

/** Creates the rules (Kafka keeps one copy of an identical ACL: idempotent). */
export async function createAcls(admin: Admin, rules: AclRule[]): Promise<number> {
  const acl = rules.flatMap((r) =>
    r.operations.map((op) => ({
      resourceType: RESOURCE[r.resource],
      resourceName: r.name,
      resourcePatternType:
        r.pattern === 'literal' ? ResourcePatternTypes.LITERAL : ResourcePatternTypes.PREFIXED,
      principal: r.principal,
      host: '*',
      operation: OPERATION[op],
      permissionType: AclPermissionTypes.ALLOW,
    })),
  );
  if (acl.length === 0) return 0;
  try {
    await admin.createAcls({ acl });
  } catch (err) {
    throw new BrabantError(
      'PERMISSION_DENIED',
      `creating Kafka ACLs failed (${(err as Error).message}): node init must run as a super user of the cluster (security.kafkaAdmin)`,
      { cause: err },
    );
  }
  return acl.length;
}

/** Creates the topics a node's services use with their declared settings (the services may not). */
export async function createTopics(admin: Admin, topics: TopicSettings[], log: Logger): Promise<void> {
  for (const t of topics)
    for (let attempt = 1; ; attempt++) {
      try {
        await ensureTopic(admin, t, log);
        break;
      } catch (err) {
        // a topic just created may not be in every answer's metadata yet (UNKNOWN_TOPIC_OR_PARTITION)
        if ((err as { retriable?: boolean }).retriable !== true || attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 300 * attempt));
      }
    }
}
