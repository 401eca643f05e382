import { describe, expect, it } from 'vitest';
import { RecencyList } from '../../runtime/node/recency-list.js';

describe('RecencyList', () => {
  it('keeps values in order of use, least recent first', () => {
    const list = new RecencyList<string>();
    const a = list.add('a');
    const b = list.add('b');
    list.add('c');
    list.touch(a);
    expect([...list]).toEqual(['b', 'c', 'a']);
    list.touch(a);
    list.touch(b);
    expect([...list]).toEqual(['c', 'a', 'b']);
    expect(list.size).toBe(3);
  });

  it('removes any entry once, and ignores a removed entry when touched', () => {
    const list = new RecencyList<string>();
    const a = list.add('a');
    const b = list.add('b');
    const c = list.add('c');
    list.remove(b);
    list.remove(b);
    expect([...list]).toEqual(['a', 'c']);
    list.touch(b);
    expect([...list]).toEqual(['a', 'c']);
    list.remove(c);
    list.remove(a);
    expect([...list]).toEqual([]);
    expect(list.size).toBe(0);
    list.add('d');
    expect([...list]).toEqual(['d']);
  });

  it('goes on iterating when the value just yielded is removed', () => {
    const list = new RecencyList<number>();
    const entries = [1, 2, 3, 4, 5].map((n) => list.add(n));
    const seen: number[] = [];
    for (const n of list) {
      seen.push(n);
      if (n % 2 === 1) list.remove(entries[n - 1]!);
    }
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect([...list]).toEqual([2, 4]);
  });

  it('follows a Set moved on every use over many random touches and removals', () => {
    const list = new RecencyList<number>();
    const model = new Set<number>();
    const entries = new Map<number, ReturnType<typeof list.add>>();
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let step = 0; step < 5_000; step++) {
      const value = random(50);
      const entry = entries.get(value);
      const action = random(10);
      if (entry === undefined) {
        entries.set(value, list.add(value));
        model.add(value);
      } else if (action === 0) {
        list.remove(entry);
        entries.delete(value);
        model.delete(value);
      } else {
        list.touch(entry);
        model.delete(value);
        model.add(value);
      }
    }
    expect([...list]).toEqual([...model]);
    expect(list.size).toBe(model.size);
    list.clear();
    expect([...list]).toEqual([]);
    expect(list.size).toBe(0);
  });
});
