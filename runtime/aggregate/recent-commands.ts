/**
 * The last `limit` commands of an aggregate that stored events, by id, with the position of
 * their commit (the actor's own, those its snapshot remembered, and those a replay or catch-up
 * read). When more come, the one that came first is forgotten; a command that comes again keeps
 * its place. A resend of one of them is answered with its first result, read back from its
 * commit (one read).
 *
 * No result is kept whole. The newest four were, to answer a prompt resend without a read, but
 * whatever an actor keeps from one command to the next outlives the young generation under load
 * (an aggregate's next command comes after several scavenges): each result with its events was
 * copied twice and promoted, about 360 of the 740 bytes promoted per command in-process, and
 * keeping none gave a fifth more throughput.
 *
 * The ids sit in a ring with their positions and hashes; beyond {@link SMALL} of them they are
 * found through an open-addressing table of hashes and ring slots, one `Int32Array`.
 * A `Map` keyed by the id strings cost several cache misses per lookup once a node
 * holds many aggregates (a probe loads the key strings it compares), and every command made
 * three lookups (is it known, remember it, forget the oldest): 2.6–3.4 µs per command with 10k
 * aggregates of 128 ids each, against 1.1–1.6 µs now. An id string is compared only when its
 * hash matches.
 */
export class RecentCommands {
  readonly #limit: number;
  /**
   * The ids in the order they came, each with the position of its commit and its hash, side by
   * side in one array (`[id, position, hash, id, position, hash, …]`): a ring of slots, the oldest
   * at #head once full. One array instead of three is fewer cache lines to load per command, which
   * is what a lookup costs with many aggregates. (It starts as a literal of its first slot: `push`
   * on an empty array reserves 17 elements, a lot for each of the many actors that get one
   * command.)
   */
  #slots: (string | number)[] = NO_SLOTS;
  #head = 0;
  /**
   * Open addressing with linear probing: at each place, the hash of an id and its `slot + 1`
   * (0 where none), side by side so that a probe reads one array; a power of two of places, at
   * least twice the ids' count, so probes stay short. An `Int32Array`: made at its size, zeroed,
   * 4 bytes an entry (a plain array filled by `push` left several times its size in garbage at
   * each growth, a sixth of what a node allocated per command while its aggregates were new).
   */
  #table: Int32Array = NO_TABLE;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** How many ids are known. */
  get size(): number {
    return this.#slots.length / 3;
  }

  /** The position of the commit of a known command. */
  positionOf(id: string): number | undefined {
    const slot = this.#slotOf(id, hashOf(id));
    return slot === -1 ? undefined : (this.#slots[3 * slot + 1] as number);
  }

  /** True when the command is known. */
  knows(id: string): boolean {
    return this.#slotOf(id, hashOf(id)) !== -1;
  }

  /** Remembers a command by id and the position of its commit (its new one, if known already). */
  know(id: string, position: number): void {
    if (this.#limit === 0) return;
    const hash = hashOf(id);
    const known = this.#slotOf(id, hash);
    const slots = this.#slots;
    if (known !== -1) {
      slots[3 * known + 1] = position;
      return;
    }
    const count = slots.length / 3;
    if (count < this.#limit) {
      if (count === 0) this.#slots = [id, position, hash];
      else slots.push(id, position, hash);
      if (count + 1 > SMALL && 4 * (count + 1) > this.#table.length) this.#rebuild(count + 1);
      else this.#place(count, hash);
      return;
    }
    const slot = this.#head;
    this.#unplace(slot);
    slots[3 * slot] = id;
    slots[3 * slot + 1] = position;
    slots[3 * slot + 2] = hash;
    this.#place(slot, hash);
    this.#head = (slot + 1) % this.#limit;
  }

  /** The ring slot of `id` (whose hash is `hash`), or -1. */
  #slotOf(id: string, hash: number): number {
    const table = this.#table;
    const slots = this.#slots;
    const mask = (table.length >> 1) - 1;
    if (mask < 0) {
      // Few ids, no table: their hashes are read in a row.
      for (let at = 2; at < slots.length; at += 3) {
        if (slots[at] === hash && slots[at - 2] === id) return (at - 2) / 3;
      }
      return -1;
    }
    for (let place = hash & mask; ; place = (place + 1) & mask) {
      const entry = table[2 * place + 1] as number;
      if (entry === 0) return -1;
      if (table[2 * place] === hash && slots[3 * (entry - 1)] === id) return entry - 1;
    }
  }

  /** Puts ring slot `slot` into the table (if there is one) at the first free place from its hash's. */
  #place(slot: number, hash: number): void {
    const table = this.#table;
    const mask = (table.length >> 1) - 1;
    if (mask < 0) return;
    let place = hash & mask;
    while (table[2 * place + 1] !== 0) place = (place + 1) & mask;
    table[2 * place] = hash;
    table[2 * place + 1] = slot + 1;
  }

  /**
   * Takes ring slot `slot` out of the table, moving back the entries after it that probed past
   * its place (backward-shift deletion: no tombstones, probes stay as short as at insertion).
   */
  #unplace(slot: number): void {
    const table = this.#table;
    const mask = (table.length >> 1) - 1;
    if (mask < 0) return;
    let hole = (this.#slots[3 * slot + 2] as number) & mask;
    while (table[2 * hole + 1] !== slot + 1) hole = (hole + 1) & mask;
    for (let next = (hole + 1) & mask; table[2 * next + 1] !== 0; next = (next + 1) & mask) {
      const home = (table[2 * next] as number) & mask;
      // The entry at `next` may fill the hole unless its home lies cyclically in (hole, next].
      const stays = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (!stays) {
        table[2 * hole] = table[2 * next] as number;
        table[2 * hole + 1] = table[2 * next + 1] as number;
        hole = next;
      }
    }
    table[2 * hole] = 0;
    table[2 * hole + 1] = 0;
  }

  /** A table for at least `count` ids: twice as many places, rounded up to a power of two. */
  #rebuild(count: number): void {
    let places = 4;
    while (places < 2 * count) places *= 2;
    this.#table = new Int32Array(2 * places);
    const slots = this.#slots;
    for (let slot = 0; 3 * slot < slots.length; slot++) {
      this.#place(slot, slots[3 * slot + 2] as number);
    }
  }

  /** The known ids with their positions, oldest first (what a snapshot carries). */
  entries(): [string, number][] {
    const slots = this.#slots;
    const count = slots.length / 3;
    const entries: [string, number][] = [];
    for (let step = 0; step < count; step++) {
      const slot = (this.#head + step) % count;
      entries.push([slots[3 * slot] as string, slots[3 * slot + 1] as number]);
    }
    return entries;
  }

  /** Forgets everything. */
  clear(): void {
    this.#slots = NO_SLOTS;
    this.#head = 0;
    this.#table = NO_TABLE;
  }
}

/** No ids (shared: replaced by a literal at the first, never written). */
const NO_SLOTS: (string | number)[] = [];

/** No table (shared: it is replaced, never written): up to {@link SMALL} ids are found without. */
const NO_TABLE = new Int32Array(0);

/**
 * Ids found by reading their hashes in a row, without a table: most aggregates see a few
 * commands, and an idle actor keeps no table.
 */
const SMALL = 8;

/**
 * FNV-1a over the id's UTF-16 code units, kept to 30 bits so that it is a small integer in V8
 * (stored in arrays without boxing). Ids are client-chosen strings, not always random, so all
 * of an id is hashed.
 */
export function hashOf(id: string): number {
  // An id is often hashed twice in a row (is it known, then remember it): the last one is kept.
  if (id === lastId) return lastHash;
  let hash = 0x811c9dc5;
  for (let index = 0; index < id.length; index++) {
    hash = Math.imul(hash ^ id.charCodeAt(index), 0x01000193);
  }
  lastId = id;
  lastHash = hash & 0x3fffffff;
  return lastHash;
}

let lastId: string | undefined;
let lastHash = 0;
