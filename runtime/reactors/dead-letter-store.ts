import type { DeadLetterPolicy } from '../domain/define-reactor.js';

/**
 * An event a reactor gave up on: what it was, where it is stored, and why it failed. The event
 * itself stays in its domain's stream; a replay reads it from there.
 */
export interface DeadLetter {
  /** Id of the dead letter (its sequence in the dead-letter stream, or a counter in memory). */
  id: number;
  /** Domain of the reactor. */
  domain: string;
  /** Reactor that gave up. */
  reactor: string;
  /** Subject of the commit that holds the event (in memory: `<domain>.<Aggregate>.<id>`). */
  subject: string;
  /** Position of that commit in the domain's stream (the JetStream stream sequence). */
  sequence: number;
  /** Aggregate type; absent when the subject is not an aggregate subject. */
  aggregate?: string;
  /** Aggregate id; absent when the subject is not an aggregate subject. */
  aggregateId?: string;
  /** Event type; absent when the commit could not be decoded. */
  eventType?: string;
  /** The event's version in its aggregate; absent when the commit could not be decoded. */
  version?: number;
  /** Why: the error code (a runtime code, a domain code, or `REACTOR_HANDLER_FAILED`) and message. */
  error: { code: string; message: string };
  /** Handler runs before it was given up on; 0 for a poison commit, which is never run. */
  attempts: number;
  /** True when the commit could not be decoded or its event failed validation (no handler ran). */
  poison: boolean;
  /** The reactor's dead-letter policy when it was written. */
  policy: DeadLetterPolicy;
  /** When it was written (ISO 8601, from the injected clock). */
  time: string;
}

/** Which dead letters to list. */
export interface DeadLetterFilter {
  /** Only this domain's. */
  domain?: string;
  /** Only this reactor's. */
  reactor?: string;
}

/**
 * Where dead letters are kept: `JetStreamDeadLetterStore` (a stream) on NATS,
 * `InMemoryDeadLetterStore` with the in-memory event store.
 */
export interface DeadLetterStore {
  /**
   * Stores a dead letter and returns it with its id. `dedupId` identifies the failed event: adding
   * the same one again (after a crash before the event was acknowledged) stores it once.
   */
  add(record: Omit<DeadLetter, 'id'>, dedupId: string): Promise<DeadLetter>;
  /** Dead letters in the order they were written. */
  list(filter?: DeadLetterFilter): Promise<DeadLetter[]>;
  /** One dead letter, or undefined when there is none with this id. */
  get(id: number): Promise<DeadLetter | undefined>;
  /** Removes a dead letter; false when there was none with this id. */
  remove(id: number): Promise<boolean>;
}
