/**
 * Names of the objects one node's replication consists of, in one place: every service, the
 * CLI and the router derive them from the node id, so they always agree.
 */

/** Replication origins on a node are named after the source node they track. */
export const ORIGIN_PREFIX = 'brabant_';

/** The replication origin that tracks how far a node applied the changes of `sourceNode`. */
export function originName(sourceNode: string): string {
  return `${ORIGIN_PREFIX}${sourceNode}`;
}

/** The source node of a replication origin name, or undefined when Brabant did not name it. */
export function nodeOfOrigin(origin: string): string | undefined {
  return origin.startsWith(ORIGIN_PREFIX) ? origin.slice(ORIGIN_PREFIX.length) : undefined;
}

/** A node id as part of a PostgreSQL identifier: lower case, `_` for anything but [a-z0-9_]. */
function identPart(nodeId: string): string {
  return nodeId.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
}

/** Default logical replication slot of a node's capture. */
export function slotName(nodeId: string): string {
  return `brabant_${identPart(nodeId)}`;
}

/** Default publication of a node's replicated tables. */
export function publicationName(nodeId: string): string {
  return `brabant_${identPart(nodeId)}`;
}

/** Kafka transactional id of a node's capture: a second capture of the node fences the first. */
export function captureTransactionalId(nodeId: string): string {
  return `brabant-capture-${nodeId}`;
}

/** Default Kafka consumer group of a node's apply. */
export function applyGroupId(nodeId: string): string {
  return `brabant-apply-${nodeId}`;
}

/**
 * Prefix of the consumer groups capture reads its own stream back with at start (one group per
 * read-back, named after the node): Kafka's ACLs allow a capture these groups only.
 */
export function readbackGroupPrefix(nodeId: string): string {
  return `brabant-readback-${nodeId}-`;
}
