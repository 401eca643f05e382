import { pushed } from '../arrays.js';
import type { CommandResult } from './command.js';

/**
 * How many of its remembered commands an actor keeps the full result of (events and response),
 * so that a prompt resend is answered without a read; the others are known by id and the
 * position of their commit only (about 100 bytes each instead of about 600).
 */
export const RESULTS_KEPT = 4;

/**
 * The last `limit` commands of an aggregate that stored events, by id, with the position of
 * their commit (the actor's own, those its snapshot remembered, and those a replay or catch-up
 * read), and the full results of the newest {@link RESULTS_KEPT} of them. When more come, the
 * one that came first is forgotten; a command that comes again keeps its place.
 */
export class RecentCommands {
  readonly #limit: number;
  readonly #kept: number;
  readonly #positions = new Map<string, number>();
  /**
   * The ids of #positions in the order they came: a ring, the oldest at #head once full. (Both
   * arrays start as literals of their first element: `push` on an empty array reserves 17 slots,
   * a quarter of a KB for each of the many actors that get one command.)
   */
  #order: string[] = [];
  #head = 0;
  /** The newest results, oldest first. */
  #results: CommandResult[] = [];

  constructor(limit: number) {
    this.#limit = limit;
    this.#kept = Math.min(limit, RESULTS_KEPT);
  }

  /** How many ids are known. */
  get size(): number {
    return this.#positions.size;
  }

  /** True when some known command's result is not kept (it would have to be read back). */
  get someOnlyById(): boolean {
    return this.#positions.size > this.#results.length;
  }

  /** The position of the commit of a known command. */
  positionOf(id: string): number | undefined {
    return this.#positions.get(id);
  }

  /** The kept result of a command. */
  resultOf(id: string): CommandResult | undefined {
    const results = this.#results;
    for (let index = results.length - 1; index >= 0; index--) {
      const result = results[index] as CommandResult;
      if (result.commandId === id) return result;
    }
    return undefined;
  }

  /** True when the command is known but its result is not kept. */
  onlyById(id: string): boolean {
    return this.#positions.has(id) && this.resultOf(id) === undefined;
  }

  /** Remembers a command with its result. */
  remember(result: CommandResult): void {
    if (this.#limit === 0) return;
    this.know(result.commandId, result.position);
    this.#dropResult(result.commandId);
    this.#results = pushed(this.#results, result);
    if (this.#results.length > this.#kept) this.#results.shift();
  }

  /** Remembers a command by id and the position of its commit. */
  know(id: string, position: number): void {
    if (this.#limit === 0) return;
    const positions = this.#positions;
    if (positions.has(id)) {
      positions.set(id, position);
      return;
    }
    positions.set(id, position);
    const order = this.#order;
    if (order.length === 0) {
      this.#order = [id];
      return;
    }
    if (order.length < this.#limit) {
      order.push(id);
      return;
    }
    const oldest = order[this.#head] as string;
    positions.delete(oldest);
    this.#dropResult(oldest);
    order[this.#head] = id;
    this.#head = (this.#head + 1) % this.#limit;
  }

  #dropResult(id: string): void {
    const results = this.#results;
    for (let index = 0; index < results.length; index++) {
      if ((results[index] as CommandResult).commandId === id) {
        results.splice(index, 1);
        return;
      }
    }
  }

  /** The known ids with their positions, oldest first (what a snapshot carries). */
  entries(): [string, number][] {
    const order = this.#order;
    const entries: [string, number][] = [];
    for (let step = 0; step < order.length; step++) {
      const id = order[(this.#head + step) % order.length] as string;
      entries.push([id, this.#positions.get(id) as number]);
    }
    return entries;
  }

  /** Forgets everything. */
  clear(): void {
    this.#positions.clear();
    this.#order.length = 0;
    this.#head = 0;
    this.#results.length = 0;
  }
}
