import { describe, expect, it } from 'vitest';
import type { CommandResult } from '../../runtime/aggregate/command.js';
import { RESULTS_KEPT, RecentCommands, hashOf } from '../../runtime/aggregate/recent-commands.js';

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
      // The kept results: the newest few remembered, each gone with its id.
      let kept: [string, number][] = [];
      const pool = [...twins, ...Array.from({ length: limit * 3 }, (_, i) => `id-${i}`)];
      for (let step = 0; step < 4000; step++) {
        const id = pool[random(pool.length)] as string;
        const position = step + 1;
        const withResult = random(3) === 0;
        if (withResult) recent.remember(result(id, position));
        else recent.know(id, position);
        const at = model.findIndex(([known]) => known === id);
        if (at !== -1) {
          model[at] = [id, position];
        } else {
          model = [...model, [id, position]] as [string, number][];
          if (model.length > limit) {
            const [gone] = model.shift() as [string, number];
            kept = kept.filter(([keptId]) => keptId !== gone);
          }
        }
        if (withResult) {
          kept = [...kept.filter(([keptId]) => keptId !== id), [id, position]] as [
            string,
            number,
          ][];
          if (kept.length > Math.min(limit, RESULTS_KEPT)) kept.shift();
        }
        const probe = pool[random(pool.length)] as string;
        const known = model.find(([knownId]) => knownId === probe);
        const keptResult = kept.find(([keptId]) => keptId === probe);
        expect(recent.positionOf(probe)).toBe(known?.[1]);
        expect(recent.resultOf(probe)?.position).toBe(keptResult?.[1]);
        expect(recent.onlyById(probe)).toBe(known !== undefined && keptResult === undefined);
        expect(recent.someOnlyById).toBe(model.length > kept.length);
        expect(recent.size).toBe(model.length);
      }
      expect(recent.entries()).toEqual(model);
      for (const id of pool) {
        expect(recent.positionOf(id)).toBe(model.find(([known]) => known === id)?.[1]);
      }
    }
  });
});
