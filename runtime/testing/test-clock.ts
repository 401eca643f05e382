import type { Clock, TimerHandle } from '../clock.js';

interface Timer {
  at: number;
  fn: () => void;
}

/**
 * A clock that moves only when told to. Timers fire, in order, during {@link TestClock.advance}.
 *
 * @example const clock = new TestClock(); clock.advance(60_000); // fires the idle sweep
 */
export class TestClock implements Clock {
  #now: number;
  #timers = new Map<number, Timer>();
  #nextId = 1;

  /** Starts at `start` milliseconds since the epoch (default 2026-01-01T00:00:00Z). */
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in time order (timers they set included). */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      let next: [number, Timer] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= target && (next === undefined || entry[1].at < next[1].at)) next = entry;
      }
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].fn();
    }
    this.#now = target;
  }
}
