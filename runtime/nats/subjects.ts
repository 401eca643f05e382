import type { StreamRef } from '../event-store/event-store.js';

/** The default first token of every subject, stream and bucket name the runtime uses. */
export const DEFAULT_PREFIX = 'jetactor';

/** Name of a domain's JetStream stream: `<prefix>_<domain>`. */
export function streamName(prefix: string, domain: string): string {
  return `${prefix}_${domain}`;
}

/** Subjects a domain's stream captures: `<prefix>.evt.<domain>.>`. */
export function domainEventSubjects(prefix: string, domain: string): string {
  return `${prefix}.evt.${domain}.>`;
}

/** The subject of one aggregate instance's commits: `<prefix>.evt.<domain>.<Aggregate>.<id>`. */
export function eventSubject(prefix: string, stream: StreamRef): string {
  return `${prefix}.evt.${stream.domain}.${stream.aggregate}.${stream.id}`;
}

/** The aggregate a commit subject belongs to, or undefined for a subject of another shape. */
export function parseEventSubject(prefix: string, subject: string): StreamRef | undefined {
  const tokens = subject.split('.');
  const prefixTokens = prefix.split('.').length;
  if (tokens.length !== prefixTokens + 4) return undefined;
  if (tokens.slice(0, prefixTokens).join('.') !== prefix || tokens[prefixTokens] !== 'evt') {
    return undefined;
  }
  const [domain, aggregate, id] = tokens.slice(prefixTokens + 1);
  if (domain === undefined || aggregate === undefined || id === undefined) return undefined;
  return { domain, aggregate, id };
}

/**
 * Subjects a node serves a domain's commands on: `<prefix>.cmd.<domain>.>`. Nodes subscribe in
 * the queue group {@link commandQueueGroup}, so each command goes to one of them.
 */
export function domainCommandSubjects(prefix: string, domain: string): string {
  return `${prefix}.cmd.${domain}.>`;
}

/** The queue group of a domain's command subscriptions: `<prefix>.cmd.<domain>`. */
export function commandQueueGroup(prefix: string, domain: string): string {
  return `${prefix}.cmd.${domain}`;
}

/** The subject of one command: `<prefix>.cmd.<domain>.<Aggregate>.<id>.<command>`. */
export function commandSubject(prefix: string, stream: StreamRef, command: string): string {
  return `${prefix}.cmd.${stream.domain}.${stream.aggregate}.${stream.id}.${command}`;
}

/** Subjects a node answers state requests of a domain on: `<prefix>.view.<domain>.>`. */
export function domainViewSubjects(prefix: string, domain: string): string {
  return `${prefix}.view.${domain}.>`;
}

/** The queue group of a domain's view subscriptions: `<prefix>.view.<domain>`. */
export function viewQueueGroup(prefix: string, domain: string): string {
  return `${prefix}.view.${domain}`;
}

/** The subject that answers an aggregate's current state: `<prefix>.view.<domain>.<Aggregate>.<id>`. */
export function viewSubject(prefix: string, stream: StreamRef): string {
  return `${prefix}.view.${stream.domain}.${stream.aggregate}.${stream.id}`;
}

/** Name of a domain's snapshot bucket: `<prefix>_snapshots_<domain>`. */
export function snapshotBucket(prefix: string, domain: string): string {
  return `${prefix}_snapshots_${domain}`;
}

/** Subjects of one aggregate type's commits: `<prefix>.evt.<domain>.<Aggregate>.*`. */
export function aggregateEventSubjects(prefix: string, domain: string, aggregate: string): string {
  return `${prefix}.evt.${domain}.${aggregate}.*`;
}

/** Name of a reactor's durable consumer on its domain's stream: `<prefix>_<domain>_<reactor>`. */
export function reactorConsumerName(prefix: string, domain: string, reactor: string): string {
  return `${prefix}_${domain}_${reactor}`;
}

/** Name of the dead-letter stream shared by every reactor: `<prefix>_deadletters`. */
export function deadLetterStream(prefix: string): string {
  return `${prefix}_deadletters`;
}

/**
 * Subject of a reactor's dead letters, `<prefix>.dlq.<domain>.<reactor>`; either part may be `*`
 * to match every domain or reactor.
 */
export function deadLetterSubject(prefix: string, domain: string, reactor: string): string {
  return `${prefix}.dlq.${domain}.${reactor}`;
}

/**
 * Subject on which the node hosting a reactor answers requests about its dead letters:
 * `<prefix>.rx.<domain>.<reactor>.<operation>` (`replay` or `discard`).
 */
export function reactorControlSubject(
  prefix: string,
  domain: string,
  reactor: string,
  operation: 'replay' | 'discard',
): string {
  return `${prefix}.rx.${domain}.${reactor}.${operation}`;
}

/**
 * The subject on which the node owning a partition takes requests other nodes forward to it:
 * `<prefix>.fwd.<domain>.<partition>` (no queue group; only the owner subscribes).
 */
export function forwardSubject(prefix: string, domain: string, partition: number): string {
  return `${prefix}.fwd.${domain}.${partition}`;
}

/** Name of a domain's partition lease bucket: `<prefix>_leases_<domain>`. */
export function leaseBucket(prefix: string, domain: string): string {
  return `${prefix}_leases_${domain}`;
}

/** Subjects a node answers a domain's queries on: `<prefix>.qry.<domain>.*`. */
export function domainQuerySubjects(prefix: string, domain: string): string {
  return `${prefix}.qry.${domain}.*`;
}

/** The queue group of a domain's query subscriptions: `<prefix>.qry.<domain>`. */
export function queryQueueGroup(prefix: string, domain: string): string {
  return `${prefix}.qry.${domain}`;
}

/** The subject of one query: `<prefix>.qry.<domain>.<name>`. */
export function querySubject(prefix: string, domain: string, name: string): string {
  return `${prefix}.qry.${domain}.${name}`;
}

/** Name of a projection's KV read-model bucket: `<prefix>_rm_<domain>_<projection>`. */
export function projectionBucket(prefix: string, domain: string, projection: string): string {
  return `${prefix}_rm_${domain}_${projection}`;
}

/** Default PostgreSQL schema of a projection's tables: `<prefix>_rm_<domain>_<projection>`, lower case. */
export function projectionSchema(prefix: string, domain: string, projection: string): string {
  return `${prefix}_rm_${domain}_${projection}`.toLowerCase();
}

/** Name of a projection's durable consumer on its domain's stream: `<prefix>_<domain>_rm_<projection>`. */
export function projectionConsumerName(prefix: string, domain: string, projection: string): string {
  return `${prefix}_${domain}_rm_${projection}`;
}

/**
 * Name of the KV bucket holding the leases of projections and reactors (one node runs each):
 * `<prefix>_rm_leases`. Its max age is the lease time.
 */
export function projectionLeaseBucket(prefix: string): string {
  return `${prefix}_rm_leases`;
}

/** A projection's key in the lease bucket: `<domain>.<projection>`. */
export function projectionLeaseKey(domain: string, projection: string): string {
  return `${domain}.${projection}`;
}

/**
 * A reactor's key in the lease bucket: `<domain>.reactor.<reactor>`. Three tokens, so it never
 * equals a projection's two-token key; still under `<domain>.>`, which a node's permissions allow.
 */
export function reactorLeaseKey(domain: string, reactor: string): string {
  return `${domain}.reactor.${reactor}`;
}

/**
 * Subject on which the node running a projection answers `rebuild` and `status` requests:
 * `<prefix>.px.<domain>.<projection>.<operation>`.
 */
export function projectionControlSubject(
  prefix: string,
  domain: string,
  projection: string,
  operation: 'rebuild' | 'status',
): string {
  return `${prefix}.px.${domain}.${projection}.${operation}`;
}

/** Subject every node hosting projections answers with their status: `<prefix>.px.status`. */
export function projectionStatusSubject(prefix: string): string {
  return `${prefix}.px.status`;
}
