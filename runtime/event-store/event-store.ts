import type { StoredEvent } from '../domain/events.js';

/** Which aggregate instance a stream belongs to. */
export interface StreamRef {
  /** Domain name. */
  readonly domain: string;
  /** Aggregate type name. */
  readonly aggregate: string;
  /** Aggregate instance id. */
  readonly id: string;
}

/** A command whose events are in a commit, with the response it gave, for idempotent replies. */
export interface CommandRecord {
  /** Command id. */
  id: string;
  /** What `decide` returned as response, if anything. */
  response?: unknown;
}

/** One commit: all events decided by one or more commands of one aggregate, stored atomically. */
export interface Commit {
  /** The aggregate. */
  stream: StreamRef;
  /** Position of the commit in its domain's log (the JetStream stream sequence). */
  position: number;
  /** 1..n events, versions consecutive. */
  events: StoredEvent[];
  /** Commands whose events are in this commit. */
  commands: CommandRecord[];
}

/** What to append. */
export interface AppendRequest {
  /** The aggregate. */
  stream: StreamRef;
  /**
   * Position of the last commit of this aggregate the writer has seen (0 when none). The append
   * fails with a conflict when another commit came after it.
   */
  expectedPosition: number;
  /** Deduplication id: appending the same id again stores nothing and returns the first position. */
  dedupId: string;
  /** 1..n events. */
  events: StoredEvent[];
  /** Commands whose events these are. */
  commands: CommandRecord[];
}

/** The result of an append. */
export interface AppendResult {
  /** Position of the commit. */
  position: number;
  /** True when `dedupId` had been stored already; nothing was appended. */
  duplicate: boolean;
}

/** A live subscription to a domain's commits. */
export interface StoreSubscription {
  /** Stops delivery; resolves once the handler in progress, if any, has returned. */
  close(): Promise<void>;
}

/** What waits for an {@link EventStore.appendWith}: told once, of its result or of its error. */
export interface AppendWaiter {
  /** The commit is stored (or was already: `duplicate`), as `append` would resolve. */
  stored(result: AppendResult): void;
  /** The append failed, with what `append` would reject with. */
  failed(error: unknown): void;
}

/** Options of {@link EventStore.subscribe}. */
export interface SubscribeOptions {
  /** Deliver commits after this position (default 0: from the beginning). */
  afterPosition?: number;
}

/**
 * Where events live. Implementations: {@link InMemoryEventStore} (the embedded default) and the
 * JetStream store; both pass the same contract suite (test/event-store/event-store.contract.ts).
 */
export interface EventStore {
  /**
   * Appends one commit atomically. Throws a `ConflictError` (`CONCURRENCY_CONFLICT`, details
   * `{ expectedPosition, actualPosition }`) when the aggregate moved past `expectedPosition`, and
   * an `InfrastructureError` when the store fails.
   */
  append(request: AppendRequest): Promise<AppendResult>;
  /**
   * {@link EventStore.append} answered through `waiter` instead of a promise, for stores that can
   * answer without one: aggregate actors use it when it is there (a promise and its reactions per
   * append are a measurable part of a command, and one object waiting holds less than callbacks).
   * Exactly one of `waiter.stored` and `waiter.failed` is called, once, never before this returns,
   * with what `append` would resolve or reject with. Optional.
   */
  appendWith?(request: AppendRequest, waiter: AppendWaiter): void;
  /** Reads an aggregate's commits after a position, in order. */
  read(stream: StreamRef, afterPosition?: number): AsyncIterable<Commit>;
  /** Delivers every commit of a domain in order, one at a time, awaiting the handler. */
  subscribe(
    domain: string,
    handler: (commit: Commit) => void | Promise<void>,
    options?: SubscribeOptions,
  ): StoreSubscription;
  /**
   * Prepares storage for these domains (the JetStream store creates or checks their streams), so
   * a misconfiguration is reported when a node starts rather than on the first command.
   * Optional: stores that need nothing omit it.
   */
  ensureDomains?(domains: readonly string[]): Promise<void>;
  /**
   * Where an aggregate's commits are kept, for error messages: the JetStream store gives the NATS
   * subject, whose stream sequences are the commits' positions. Optional.
   */
  subject?(stream: StreamRef): string;
  /** Releases resources; later calls fail with `STORE_CLOSED`. */
  close(): Promise<void>;
}
