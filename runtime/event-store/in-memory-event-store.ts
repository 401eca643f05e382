import { systemClock, type Clock } from '../clock.js';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import { ConfigError, ConflictError, InfrastructureError } from '../errors.js';
import type {
  AppendRequest,
  AppendResult,
  AppendWaiter,
  Commit,
  EventStore,
  StoreSubscription,
  StreamRef,
  SubscribeOptions,
} from './event-store.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';

/** Options of {@link InMemoryEventStore}. */
export interface InMemoryEventStoreOptions {
  /** Codec commits are stored with, so values behave as they would over the wire. Default msgpack. */
  codec?: Codec;
  /** Clock for the deduplication window. */
  clock?: Clock;
  /** How long a dedup id is remembered, in milliseconds (JetStream's default: 2 minutes). */
  duplicateWindowMs?: number;
}

interface DomainLog {
  /** Encoded commits; index i holds position i + 1. */
  commits: Uint8Array[];
  /** Aggregate key → positions of its commits. */
  streams: Map<string, number[]>;
  /** Dedup id → position and when it was stored. */
  dedup: Map<string, { position: number; at: number }>;
  subscribers: Set<MemorySubscription>;
}

/**
 * The embedded event store: everything in memory, same semantics as the JetStream store
 * (positions per domain, expected-position checks, deduplication window, ordered subscriptions).
 * Used by tests and when no NATS server can be had.
 */
export class InMemoryEventStore implements EventStore {
  readonly #codec: Codec;
  readonly #clock: Clock;
  readonly #window: number;
  readonly #domains = new Map<string, DomainLog>();
  #closed = false;

  constructor(options: InMemoryEventStoreOptions = {}) {
    const known = ['codec', 'clock', 'duplicateWindowMs'];
    const unknown = unknownOptions(options, known);
    if (unknown.length > 0) {
      throw new ConfigError(`In-memory event store: ${describeUnknownOptions(unknown, known)}.`, {
        details: { unknown },
      });
    }
    this.#codec = options.codec ?? new MsgpackCodec();
    this.#clock = options.clock ?? systemClock;
    this.#window = options.duplicateWindowMs ?? 120_000;
  }

  append(request: AppendRequest): Promise<AppendResult> {
    try {
      return Promise.resolve(this.#append(request));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  appendWith(request: AppendRequest, waiter: AppendWaiter): void {
    // Appended at once, as `append` does; answered once the caller's stack is done.
    let result: AppendResult;
    try {
      result = this.#append(request);
    } catch (error) {
      queueMicrotask(() => waiter.failed(error));
      return;
    }
    queueMicrotask(() => waiter.stored(result));
  }

  #append(request: AppendRequest): AppendResult {
    this.#assertOpen();
    const log = this.#log(request.stream.domain);
    const now = this.#clock.now();
    const seen = log.dedup.get(request.dedupId);
    if (seen !== undefined && now - seen.at < this.#window) {
      return { position: seen.position, duplicate: true };
    }
    const key = streamKey(request.stream);
    const positions = log.streams.get(key);
    const actual = positions === undefined ? 0 : (positions[positions.length - 1] ?? 0);
    if (actual !== request.expectedPosition) {
      throw new ConflictError(
        'CONCURRENCY_CONFLICT',
        `${key} is at position ${actual}, not ${request.expectedPosition}: another writer appended first.`,
        { details: { expectedPosition: request.expectedPosition, actualPosition: actual } },
      );
    }
    const position = log.commits.length + 1;
    const commit: Commit = {
      stream: { ...request.stream },
      position,
      events: request.events,
      commands: request.commands,
    };
    // Bytes of its own: an encoded value may be a slice of Node's shared buffer pool, which one
    // kept slice would keep whole.
    log.commits.push(new Uint8Array(this.#codec.encode(commit)));
    if (positions === undefined) log.streams.set(key, [position]);
    else positions.push(position);
    log.dedup.set(request.dedupId, { position, at: now });
    this.#expireDedup(log, now);
    for (const subscriber of log.subscribers) subscriber.wake();
    return { position, duplicate: false };
  }

  read(stream: StreamRef, afterPosition = 0): AsyncIterable<Commit> {
    this.#assertOpen();
    const log = this.#domains.get(stream.domain);
    const positions = log?.streams.get(streamKey(stream)) ?? [];
    const later = positions.filter((position) => position > afterPosition);
    let index = 0;
    return {
      [Symbol.asyncIterator]: () => ({
        next: (): Promise<IteratorResult<Commit>> => {
          const position = later[index++];
          if (log === undefined || position === undefined) {
            return Promise.resolve({ done: true, value: undefined });
          }
          try {
            return Promise.resolve({ done: false, value: this.#decode(log, position) });
          } catch (error) {
            return Promise.reject(error);
          }
        },
      }),
    };
  }

  subscribe(
    domain: string,
    handler: (commit: Commit) => void | Promise<void>,
    options: SubscribeOptions = {},
  ): StoreSubscription {
    this.#assertOpen();
    const log = this.#log(domain);
    const subscription = new MemorySubscription(
      log,
      (position) => this.#decode(log, position),
      handler,
      options.afterPosition ?? 0,
    );
    log.subscribers.add(subscription);
    subscription.wake();
    return subscription;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const closing = [...this.#domains.values()].flatMap((log) =>
      [...log.subscribers].map((s) => s.close()),
    );
    await Promise.all(closing);
  }

  #decode(log: DomainLog, position: number): Commit {
    const bytes = log.commits[position - 1];
    if (bytes === undefined) {
      throw new InfrastructureError('CORRUPT_DATA', `No commit at position ${position}.`);
    }
    return this.#codec.decode(bytes) as Commit;
  }

  #log(domain: string): DomainLog {
    let log = this.#domains.get(domain);
    if (log === undefined) {
      log = { commits: [], streams: new Map(), dedup: new Map(), subscribers: new Set() };
      this.#domains.set(domain, log);
    }
    return log;
  }

  #expireDedup(log: DomainLog, now: number): void {
    for (const [id, entry] of log.dedup) {
      if (now - entry.at < this.#window) break;
      log.dedup.delete(id);
    }
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new InfrastructureError(
        'STORE_CLOSED',
        'The in-memory event store is closed; create a new one or stop using this one.',
      );
    }
  }
}

class MemorySubscription implements StoreSubscription {
  #cursor: number;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(
    private readonly log: DomainLog,
    private readonly decode: (position: number) => Commit,
    private readonly handler: (commit: Commit) => void | Promise<void>,
    afterPosition: number,
  ) {
    this.#cursor = afterPosition;
  }

  wake(): void {
    if (this.#running !== undefined || this.#closed) return;
    this.#running = this.#pump().finally(() => {
      this.#running = undefined;
      if (!this.#closed && this.#cursor < this.log.commits.length) this.wake();
    });
  }

  async #pump(): Promise<void> {
    await Promise.resolve();
    try {
      while (!this.#closed && this.#cursor < this.log.commits.length) {
        const commit = this.decode(this.#cursor + 1);
        await this.handler(commit);
        this.#cursor += 1;
      }
    } catch {
      // A handler that throws ends its subscription; subscribers handle their own errors.
      this.#closed = true;
      this.log.subscribers.delete(this);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.log.subscribers.delete(this);
    await this.#running;
  }
}

/** `domain/Aggregate/id`, the key of one aggregate instance. */
export function streamKey(stream: StreamRef): string {
  return `${stream.domain}/${stream.aggregate}/${stream.id}`;
}
