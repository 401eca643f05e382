import type { DomainDefinition } from '../domain/define-domain.js';
import type { AnyProjectionDefinition } from '../domain/define-projection.js';
import { InfrastructureError } from '../errors.js';
import type { Commit, EventStore, StoreSubscription } from '../event-store/event-store.js';
import type { DeadLetter } from '../reactors/dead-letter-store.js';
import { InMemoryDeadLetterStore } from '../reactors/in-memory-dead-letter-store.js';
import { InMemoryReadModelStore } from './in-memory-read-model-store.js';
import type { DocumentReadModel } from './read-model.js';
import type { ReadModelStore } from './read-model-store.js';
import {
  ProjectionHostBase,
  type ProjectionHostDeps,
  type ProjectionSlot,
  type RebuildStarted,
} from './projection-host.js';
import type { ProjectionDelivery } from './projection-runner.js';

/** What {@link InProcessProjections} needs from the node. */
export interface InProcessProjectionsDeps extends Omit<ProjectionHostDeps, 'deadLetters'> {
  /** The store whose subscription feeds the projections. */
  store: EventStore;
  /** Where dead letters go; default a new `InMemoryDeadLetterStore`. */
  deadLetters?: ProjectionHostDeps['deadLetters'];
}

/**
 * Runs projections in the node's process on the event store's subscription (the embedded runner,
 * with the in-memory store): document read models are kept in memory; PostgreSQL ones are
 * dropped when listening starts (the events they were built from may be gone) and built again.
 */
export class InProcessProjections extends ProjectionHostBase {
  readonly #store: EventStore;
  readonly #subscriptions = new Map<string, StoreSubscription>();

  constructor(deps: InProcessProjectionsDeps) {
    super({ ...deps, deadLetters: deps.deadLetters ?? new InMemoryDeadLetterStore() });
    this.#store = deps.store;
  }

  async rebuild(domain: string, projection: string): Promise<RebuildStarted> {
    const slot = this.slot(domain, projection);
    const target = Math.max(slot.runner.received, slot.runner.position);
    await this.#subscriptions.get(slot.key)?.close();
    await slot.runner.stop();
    slot.runner.state = 'rebuilding';
    await slot.store.drop();
    await this.#run(slot);
    return { projection: slot.key, target };
  }

  protected documentStore(
    domain: DomainDefinition,
    projection: AnyProjectionDefinition,
  ): ReadModelStore<any, any> {
    const spec = projection.store as DocumentReadModel;
    return new InMemoryReadModelStore(
      `memory read model ${domain.name}.${projection.name}`,
      spec.document,
    );
  }

  protected async start(slots: readonly ProjectionSlot[]): Promise<void> {
    for (const slot of slots) {
      // The events live in this process only: a read model kept elsewhere (PostgreSQL) may have
      // been built from other events, so it is built again from these.
      if (slot.store.kind !== 'memory') await slot.store.drop();
      await this.#run(slot);
    }
  }

  protected async stop(timeoutMs: number): Promise<void> {
    const subscriptions = [...this.#subscriptions.values()];
    this.#subscriptions.clear();
    await Promise.all(subscriptions.map((s) => s.close()));
    await Promise.all([...this.slots.values()].map((slot) => slot.runner.stop(timeoutMs)));
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

  async #run(slot: ProjectionSlot): Promise<void> {
    const position = await slot.runner.start();
    const { runner } = slot;
    this.#subscriptions.set(
      slot.key,
      this.#store.subscribe(
        slot.domain.name,
        async (commit) => {
          runner.push(delivery(commit), true);
          await runner.whenBelow(this.deps.options.maxAckPending);
        },
        { afterPosition: position },
      ),
    );
  }
}

function delivery(commit: Commit): ProjectionDelivery {
  const { stream } = commit;
  return {
    sequence: commit.position,
    subject: `${stream.domain}.${stream.aggregate}.${stream.id}`,
    stream,
    decode: () => commit,
    ack: () => undefined,
    working: () => undefined,
  };
}
