import { describe, expect, it } from 'vitest';
import { SequenceSlots } from '../../runtime/nats/sequence-slots.js';

describe('SequenceSlots', () => {
  it('gives ids 1, 2, 3, … and hands each value back once, under its own id only', () => {
    const slots = new SequenceSlots<string>(4);
    expect(slots.nextId).toBe(1);
    expect([slots.add('a'), slots.add('b'), slots.add('c')]).toEqual([1, 2, 3]);
    expect(slots.size).toBe(3);
    expect(slots.take(2)).toBe('b');
    expect(slots.take(2)).toBeUndefined();
    for (const never of [0, -1, 4, 1.5, Number.NaN, 2 ** 40]) {
      expect(slots.take(never)).toBeUndefined();
    }
    expect(slots.size).toBe(2);
    expect([...slots.entries()]).toEqual([
      [1, 'a'],
      [3, 'c'],
    ]);
    expect(slots.takeAll()).toEqual(['a', 'c']);
    expect(slots.size).toBe(0);
    expect(slots.take(1)).toBeUndefined();
    expect(slots.add('d')).toBe(4);
  });

  it('keeps every value when more wait than it has slots, and when one waits far longer than the rest', () => {
    // 16 slots at least: 100 waiting at once make it grow.
    const grown = new SequenceSlots<number>(16);
    for (let n = 1; n <= 100; n++) expect(grown.add(n * 10)).toBe(n);
    expect(grown.size).toBe(100);
    for (let n = 1; n <= 100; n++) expect(grown.take(n)).toBe(n * 10);

    // One value waits while 10,000 come and go: it is set aside, not spanned by the ring.
    const straggler = new SequenceSlots<number>(16);
    const slow = straggler.add(-1);
    for (let n = 0; n < 10_000; n++) {
      const id = straggler.add(n);
      expect(straggler.take(id)).toBe(n);
    }
    expect(straggler.size).toBe(1);
    expect([...straggler.entries()]).toEqual([[slow, -1]]);
    expect(straggler.take(slow)).toBe(-1);
    expect(straggler.size).toBe(0);
  });

  it('behaves as a map of ids to values under random adds and takes', () => {
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const slots = new SequenceSlots<number>(16);
    const model = new Map<number, number>();
    for (let step = 0; step < 50_000; step++) {
      const roll = random();
      if (roll < 0.5 || model.size === 0) {
        const id = slots.add(step);
        expect(model.has(id)).toBe(false);
        model.set(id, step);
      } else {
        // Mostly the oldest few (replies in about the order sent), sometimes any, sometimes none.
        const ids = [...model.keys()];
        const id =
          roll < 0.9
            ? (ids[Math.floor(random() * Math.min(8, ids.length))] as number)
            : roll < 0.98
              ? (ids[Math.floor(random() * ids.length)] as number)
              : slots.nextId + 3;
        expect(slots.take(id)).toBe(model.get(id));
        model.delete(id);
      }
      expect(slots.size).toBe(model.size);
    }
    expect([...slots.entries()]).toEqual([...model.entries()].sort((a, b) => a[0] - b[0]));
    expect(slots.takeAll()).toEqual(
      [...model.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v),
    );
  });
});
