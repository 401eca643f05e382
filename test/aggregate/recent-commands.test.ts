import { describe, expect, it } from 'vitest';
import type { CommandResult } from '../../runtime/aggregate/command.js';
import { RESULTS_KEPT, RecentCommands } from '../../runtime/aggregate/recent-commands.js';

function result(id: string, position: number): CommandResult {
  return {
    commandId: id,
    version: position,
    events: [],
    response: undefined,
    duplicate: false,
    position,
  };
}

describe('RecentCommands', () => {
  it('knows the last `limit` ids with their positions, oldest first, and forgets the oldest', () => {
    const recent = new RecentCommands(3);
    for (let i = 1; i <= 5; i++) recent.know(`c${i}`, i * 10);
    expect(recent.entries()).toEqual([
      ['c3', 30],
      ['c4', 40],
      ['c5', 50],
    ]);
    expect(recent.positionOf('c2')).toBeUndefined();
    expect(recent.positionOf('c4')).toBe(40);
    expect(recent.size).toBe(3);
  });

  it('keeps the full results of the newest few only', () => {
    const recent = new RecentCommands(128);
    for (let i = 1; i <= RESULTS_KEPT + 2; i++) recent.remember(result(`c${i}`, i));
    expect(recent.resultOf('c1')).toBeUndefined();
    expect(recent.onlyById('c1')).toBe(true);
    expect(recent.positionOf('c1')).toBe(1);
    const newest = `c${RESULTS_KEPT + 2}`;
    expect(recent.resultOf(newest)).toMatchObject({ commandId: newest });
    expect(recent.onlyById(newest)).toBe(false);
    expect(recent.someOnlyById).toBe(true);
  });

  it('gives a command that comes again its new result and position but not a new place', () => {
    const recent = new RecentCommands(3);
    recent.remember(result('a', 1));
    recent.remember(result('b', 2));
    recent.remember(result('a', 7));
    expect(recent.resultOf('a')?.position).toBe(7);
    recent.know('c', 3);
    recent.know('d', 4);
    // 'a' came first, so it goes first, with its result.
    expect(recent.positionOf('a')).toBeUndefined();
    expect(recent.resultOf('a')).toBeUndefined();
    expect(recent.entries().map(([id]) => id)).toEqual(['b', 'c', 'd']);
  });

  it('keeps no more results than ids when the limit is small, and nothing with limit 0', () => {
    const small = new RecentCommands(1);
    small.remember(result('a', 1));
    small.remember(result('b', 2));
    expect(small.resultOf('a')).toBeUndefined();
    expect(small.resultOf('b')?.position).toBe(2);
    expect(small.someOnlyById).toBe(false);

    const none = new RecentCommands(0);
    none.remember(result('a', 1));
    none.know('b', 2);
    expect(none.size).toBe(0);
    expect(none.resultOf('a')).toBeUndefined();
    expect(none.entries()).toEqual([]);
  });

  it('starts over after clear', () => {
    const recent = new RecentCommands(2);
    recent.remember(result('a', 1));
    recent.know('b', 2);
    recent.know('c', 3);
    recent.clear();
    expect(recent.size).toBe(0);
    recent.know('d', 4);
    expect(recent.entries()).toEqual([['d', 4]]);
  });
});
