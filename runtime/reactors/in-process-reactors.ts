import type { DomainDefinition } from '../domain/define-domain.js';
import { InfrastructureError } from '../errors.js';
import type { Commit, EventStore, StoreSubscription } from '../event-store/event-store.js';
import type { DeadLetter } from './dead-letter-store.js';
import { InMemoryDeadLetterStore } from './in-memory-dead-letter-store.js';
import type { Delivery, ReactorDispatcher } from './reactor-dispatcher.js';
import { ReactorHostBase, type ReactorHostDeps } from './reactor-host.js';

/** What {@link InProcessReactors} needs from the node. */
export interface InProcessReactorsDeps extends Omit<ReactorHostDeps, 'deadLetters'> {
  /** The store whose subscription feeds the reactors. */
  store: EventStore;
  /** Where dead letters go; default a new `InMemoryDeadLetterStore`. */
  deadLetters?: ReactorHostDeps['deadLetters'];
}

/** Commits a reactor takes in before the store's subscription waits for it. */
const MAX_IN_HAND = 1_000;

/**
 * Runs reactors in the node's process on the store's subscription (the embedded runner, used
 * with the in-memory store). Each reactor reads its domain's commits from the beginning every
 * time it listens (commands it sends are deduplicated by their derived ids), handles them in
 * order per aggregate and in parallel across aggregates, retries with backoff, and keeps dead
 * letters in memory. Nothing is durable: use `JetStreamReactors` for that.
 */
export class InProcessReactors extends ReactorHostBase {
  readonly #store: EventStore;
  readonly #subscriptions: StoreSubscription[] = [];

  constructor(deps: InProcessReactorsDeps) {
    super({ ...deps, deadLetters: deps.deadLetters ?? new InMemoryDeadLetterStore() });
    this.#store = deps.store;
  }

  protected start(dispatchers: readonly ReactorDispatcher[]): Promise<void> {
    for (const dispatcher of dispatchers) {
      if (dispatcher.aggregates.size === 0) continue;
      this.#subscriptions.push(
        this.#store.subscribe(dispatcher.domain.name, async (commit) => {
          if (!dispatcher.aggregates.has(commit.stream.aggregate)) return;
          dispatcher.dispatch(delivery(commit));
          await dispatcher.whenBelow(MAX_IN_HAND);
        }),
      );
    }
    return Promise.resolve();
  }

  protected async stop(timeoutMs: number): Promise<void> {
    const closing = [...this.dispatchers.values()].map((d) => d.close(timeoutMs));
    await Promise.all(this.#subscriptions.splice(0).map((s) => s.close()));
    await Promise.all(closing);
    for (const dispatcher of this.dispatchers.values()) dispatcher.giveBack();
  }

  protected async load(domain: DomainDefinition, deadLetter: DeadLetter): Promise<Commit> {
    if (deadLetter.aggregate !== undefined && deadLetter.aggregateId !== undefined) {
      const stream = {
        domain: domain.name,
        aggregate: deadLetter.aggregate,
        id: deadLetter.aggregateId,
      };
      for await (const commit of this.#store.read(stream, deadLetter.sequence - 1)) {
        if (commit.position === deadLetter.sequence) return commit;
        break;
      }
    }
    throw new InfrastructureError(
      'CORRUPT_DATA',
      `Dead letter ${deadLetter.id} refers to the commit at position ${deadLetter.sequence} of "${deadLetter.subject}", which the store no longer has; discard it.`,
      { details: { subject: deadLetter.subject, sequence: deadLetter.sequence } },
    );
  }

  protected pending(): number {
    return 0;
  }
}

function delivery(commit: Commit): Delivery {
  const { stream } = commit;
  const subject = `${stream.domain}.${stream.aggregate}.${stream.id}`;
  return {
    key: subject,
    subject,
    sequence: commit.position,
    stream,
    decode: () => commit,
    ack: () => undefined,
    nak: () => undefined,
    working: () => undefined,
  };
}
