/**
 * Values waiting under the sequential ids it gives them (1, 2, 3, …): a ring of slots indexed by
 * id, for requests that wait for a reply carrying their id. Replies come back roughly in the
 * order requests went, so the ring only has to span the ids from the oldest still waiting to the
 * newest. When that span outgrows it, the ring doubles if at least half its slots are taken, and
 * otherwise the oldest values move to a `Map` on the side (a few requests waiting much longer
 * than the rest, such as one that will time out), so one slow request does not make the ring
 * span every request sent meanwhile.
 *
 * What a `Map` keyed by the ids cost instead: a hash, an insertion and a deletion per request,
 * and hash tables it replaced as it filled with deleted entries, which V8 leaves holding the
 * entries they had and pointing to the next table; once promoted and garbage, such tables keep
 * what they reach alive through scavenges until the next mark-compact. A slot is emptied when
 * its value is taken, and the ring is replaced only when it grows.
 */
export class SequenceSlots<T> {
  #slots: (T | undefined)[];
  #mask: number;
  /** Every id below it has been taken, or waits in #aside. */
  #oldest = 1;
  /** Values older than #oldest still waiting, by id (in id order). */
  #aside: Map<number, T> | undefined;
  #next = 1;
  #size = 0;

  /** @param capacity initial number of slots, rounded up to a power of two. */
  constructor(capacity = 1024) {
    let slots = 16;
    while (slots < capacity) slots *= 2;
    this.#slots = new Array<T | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
  }

  /** Values waiting. */
  get size(): number {
    return this.#size;
  }

  /** The id the next {@link add} gives. */
  get nextId(): number {
    return this.#next;
  }

  /** Keeps `value` under the next id, and returns that id. */
  add(value: T): number {
    const id = this.#next;
    if (id - this.#oldest > this.#mask) {
      if (2 * this.#size > this.#mask) this.#grow();
      else this.#setAside(id);
    }
    this.#slots[id & this.#mask] = value;
    this.#next = id + 1;
    this.#size += 1;
    return id;
  }

  /** The value waiting under `id`, no longer kept; undefined when none is (taken, or never given). */
  take(id: number): T | undefined {
    if (!(id >= this.#oldest && id < this.#next && Number.isInteger(id))) {
      const value = this.#aside?.get(id);
      if (value !== undefined) {
        this.#aside?.delete(id);
        this.#size -= 1;
      }
      return value;
    }
    const slot = id & this.#mask;
    const value = this.#slots[slot];
    if (value === undefined) return undefined;
    this.#slots[slot] = undefined;
    this.#size -= 1;
    if (id === this.#oldest) this.#advance();
    return value;
  }

  /** The values waiting with their ids, oldest first. */
  *entries(): IterableIterator<[number, T]> {
    if (this.#aside !== undefined) yield* [...this.#aside];
    for (let id = this.#oldest; id < this.#next; id++) {
      const value = this.#slots[id & this.#mask];
      if (value !== undefined) yield [id, value];
    }
  }

  /** Takes every value waiting, oldest first. */
  takeAll(): T[] {
    const values: T[] = this.#aside === undefined ? [] : [...this.#aside.values()];
    this.#aside = undefined;
    for (let id = this.#oldest; id < this.#next; id++) {
      const slot = id & this.#mask;
      const value = this.#slots[slot];
      if (value === undefined) continue;
      values.push(value);
      this.#slots[slot] = undefined;
    }
    this.#oldest = this.#next;
    this.#size = 0;
    return values;
  }

  /** Moves #oldest past the ids taken. */
  #advance(): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let oldest = this.#oldest;
    while (oldest < this.#next && slots[oldest & mask] === undefined) oldest++;
    this.#oldest = oldest;
  }

  /**
   * Moves the oldest values to #aside until the ring spans half its slots once `id` is in it.
   */
  #setAside(id: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    const aside = (this.#aside ??= new Map());
    const until = id - (mask + 1) / 2;
    for (let older = this.#oldest; older < until; older++) {
      const slot = older & mask;
      const value = slots[slot];
      if (value === undefined) continue;
      aside.set(older, value);
      slots[slot] = undefined;
    }
    this.#oldest = until;
    this.#advance();
  }

  /** Doubles the ring, each waiting value at its id's slot in the new one. */
  #grow(): void {
    const old = this.#slots;
    const oldMask = this.#mask;
    const slots = new Array<T | undefined>(2 * old.length).fill(undefined);
    const mask = slots.length - 1;
    for (let id = this.#oldest; id < this.#next; id++) {
      const slot = id & oldMask;
      slots[id & mask] = old[slot];
      // The old ring is garbage now; emptied, it keeps nothing alive if it was promoted.
      old[slot] = undefined;
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}
