import type { DeadLetter, DeadLetterFilter, DeadLetterStore } from './dead-letter-store.js';

/** Dead letters kept in memory, for the in-memory event store; they die with the process. */
export class InMemoryDeadLetterStore implements DeadLetterStore {
  readonly #records = new Map<number, DeadLetter>();
  readonly #byDedupId = new Map<string, number>();
  #next = 1;

  add(record: Omit<DeadLetter, 'id'>, dedupId: string): Promise<DeadLetter> {
    const known = this.#byDedupId.get(dedupId);
    const existing = known === undefined ? undefined : this.#records.get(known);
    if (existing !== undefined) return Promise.resolve(existing);
    const stored = Object.freeze({ ...record, id: this.#next++ });
    this.#records.set(stored.id, stored);
    this.#byDedupId.set(dedupId, stored.id);
    return Promise.resolve(stored);
  }

  list(filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
    return Promise.resolve(
      [...this.#records.values()].filter(
        (r) =>
          (filter.domain === undefined || r.domain === filter.domain) &&
          (filter.reactor === undefined || r.reactor === filter.reactor),
      ),
    );
  }

  get(id: number): Promise<DeadLetter | undefined> {
    return Promise.resolve(this.#records.get(id));
  }

  remove(id: number): Promise<boolean> {
    return Promise.resolve(this.#records.delete(id));
  }
}
