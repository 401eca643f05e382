import { describe, expect, it } from 'vitest';
import { TestClock } from '../../runtime/index.js';

describe('test clock', () => {
  it('starts at 2026-01-01 unless told otherwise and moves only when advanced', () => {
    expect(new TestClock().now()).toBe(Date.UTC(2026, 0, 1));
    const clock = new TestClock(1_000);
    clock.advance(250);
    expect(clock.now()).toBe(1_250);
  });

  it('fires due timers in time order during advance, at their own time', () => {
    const clock = new TestClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 200);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 100);
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 300);

    clock.advance(200);
    expect(fired).toEqual(['a@100', 'b@200']);
    expect(clock.pending).toBe(1);
    clock.advance(100);
    expect(fired).toEqual(['a@100', 'b@200', 'c@300']);
  });

  it('fires timers that timers set, when they fall due within the same advance', () => {
    const clock = new TestClock(0);
    const fired: number[] = [];
    const tick = () => {
      fired.push(clock.now());
      if (fired.length < 10) clock.setTimeout(tick, 30);
    };
    clock.setTimeout(tick, 30);

    clock.advance(100);
    expect(fired).toEqual([30, 60, 90]);
    expect(clock.now()).toBe(100);
  });

  it('never fires a cleared timer', () => {
    const clock = new TestClock(0);
    let fired = false;
    const handle = clock.setTimeout(() => (fired = true), 10);
    clock.clearTimeout(handle);
    clock.advance(1_000);
    expect(fired).toBe(false);
    expect(clock.pending).toBe(0);
  });
});
