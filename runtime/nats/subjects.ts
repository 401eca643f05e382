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

/** Name of a domain's snapshot bucket: `<prefix>_snapshots_<domain>`. */
export function snapshotBucket(prefix: string, domain: string): string {
  return `${prefix}_snapshots_${domain}`;
}
