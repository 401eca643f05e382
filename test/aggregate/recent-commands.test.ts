import { describe, expect, it } from 'vitest';
import { RecentCommands, hashOf } from '../../runtime/aggregate/recent-commands.js';

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

  it('gives a command that comes again its new position but not a new place', () => {
    const recent = new RecentCommands(3);
    recent.know('a', 1);
    recent.know('b', 2);
    recent.know('a', 7);
    expect(recent.positionOf('a')).toBe(7);
    expect(recent.knows('a')).toBe(true);
    recent.know('c', 3);
    recent.know('d', 4);
    // 'a' came first, so it goes first.
    expect(recent.positionOf('a')).toBeUndefined();
    expect(recent.knows('a')).toBe(false);
    expect(recent.entries().map(([id]) => id)).toEqual(['b', 'c', 'd']);
  });

  it('knows nothing with limit 0', () => {
    const none = new RecentCommands(0);
    none.know('a', 1);
    expect(none.size).toBe(0);
    expect(none.knows('a')).toBe(false);
    expect(none.entries()).toEqual([]);
  });

  it('starts over after clear', () => {
    const recent = new RecentCommands(2);
    recent.know('a', 1);
    recent.know('b', 2);
    recent.know('c', 3);
    recent.clear();
    expect(recent.size).toBe(0);
    recent.know('d', 4);
    expect(recent.entries()).toEqual([['d', 4]]);
  });

  it('acts as a plain map with a ring of ids under random use, hash collisions included', () => {
    // Two ids of the same hash, found by brute force: they must stay apart.
    const seen = new Map<number, string>();
    let twins: [string, string] | undefined;
    for (let n = 0; twins === undefined; n++) {
      const id = `twin-${n}`;
      const other = seen.get(hashOf(id));
      if (other !== undefined) twins = [other, id];
      else seen.set(hashOf(id), id);
    }
    expect(twins[0]).not.toBe(twins[1]);

    let state = 7;
    const random = (below: number): number => {
      state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
      return state % below;
    };
    for (const limit of [1, 2, 3, 5, 8, 17, 128]) {
      const recent = new RecentCommands(limit);
      // The reference: ids in the order they came, the oldest dropped beyond the limit.
      let model: [string, number][] = [];
      const pool = [...twins, ...Array.from({ length: limit * 3 }, (_, i) => `id-${i}`)];
      for (let step = 0; step < 4000; step++) {
        const id = pool[random(pool.length)] as string;
        const position = step + 1;
        recent.know(id, position);
        const at = model.findIndex(([known]) => known === id);
        if (at !== -1) {
          model[at] = [id, position];
        } else {
          model = [...model, [id, position]] as [string, number][];
          if (model.length > limit) model.shift();
        }
        const probe = pool[random(pool.length)] as string;
        const known = model.find(([knownId]) => knownId === probe);
        expect(recent.positionOf(probe)).toBe(known?.[1]);
        expect(recent.knows(probe)).toBe(known !== undefined);
        expect(recent.size).toBe(model.length);
      }
      expect(recent.entries()).toEqual(model);
      for (const id of pool) {
        expect(recent.positionOf(id)).toBe(model.find(([known]) => known === id)?.[1]);
      }
    }
  });
});
