/** One value's place in a {@link RecencyList}; kept by whoever finds the value, to touch it. */
export class RecencyEntry<T> {
  readonly value: T;
  /** The entry used just before this one; undefined for the least recent. */
  older: RecencyEntry<T> | undefined = undefined;
  /** The entry used just after this one; undefined for the most recent. */
  newer: RecencyEntry<T> | undefined = undefined;
  /** Whether the entry is in its list. */
  listed = false;

  constructor(value: T) {
    this.value = value;
  }
}

/**
 * Values in order of use, least recent first: a doubly linked list of entries the caller keeps,
 * so marking a value used moves a few pointers (a `Set` deleted from and added to on every use
 * hashes the value twice and grows a table of tombstones it must rebuild). Iterating is safe while
 * the entry just yielded is removed.
 */
export class RecencyList<T> {
  #oldest: RecencyEntry<T> | undefined = undefined;
  #newest: RecencyEntry<T> | undefined = undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Adds `value` as the most recent and returns its entry. */
  add(value: T): RecencyEntry<T> {
    const entry = new RecencyEntry(value);
    this.#append(entry);
    return entry;
  }

  /** Marks `entry` the most recent; nothing when it is not listed. */
  touch(entry: RecencyEntry<T>): void {
    if (!entry.listed || entry === this.#newest) return;
    this.#unlink(entry);
    this.#append(entry);
  }

  /** Takes `entry` out of the list; nothing when it is not listed. */
  remove(entry: RecencyEntry<T>): void {
    if (!entry.listed) return;
    this.#unlink(entry);
    entry.listed = false;
    this.#size -= 1;
  }

  clear(): void {
    for (let entry = this.#oldest; entry !== undefined;) {
      const newer = entry.newer;
      entry.older = entry.newer = undefined;
      entry.listed = false;
      entry = newer;
    }
    this.#oldest = this.#newest = undefined;
    this.#size = 0;
  }

  /** The values, least recent first. */
  *values(): IterableIterator<T> {
    let entry = this.#oldest;
    while (entry !== undefined) {
      // Read before yielding: the caller may remove (or touch) the entry it is given.
      const newer = entry.newer;
      yield entry.value;
      entry = newer;
    }
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.values();
  }

  #append(entry: RecencyEntry<T>): void {
    entry.older = this.#newest;
    entry.newer = undefined;
    if (this.#newest === undefined) this.#oldest = entry;
    else this.#newest.newer = entry;
    this.#newest = entry;
    if (!entry.listed) {
      entry.listed = true;
      this.#size += 1;
    }
  }

  #unlink(entry: RecencyEntry<T>): void {
    const { older, newer } = entry;
    if (older === undefined) this.#oldest = newer;
    else older.newer = newer;
    if (newer === undefined) this.#newest = older;
    else newer.older = older;
    entry.older = entry.newer = undefined;
  }
}
