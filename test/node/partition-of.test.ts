import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fairShare, planLeases, type LeasePlanInput } from '../../runtime/node/partition-leases.js';
import { DEFAULT_PARTITIONS, isConfigError, partitionOf } from '../../runtime/index.js';

/** How many of `ids` fall into each partition. */
function histogram(ids: readonly string[], partitions: number, aggregate = 'Account'): number[] {
  const counts = new Array<number>(partitions).fill(0);
  for (const id of ids) counts[partitionOf(aggregate, id, partitions)]! += 1;
  return counts;
}

/** Pearson's chi-square statistic of counts against a uniform spread. */
function chiSquare(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
}

describe('partitionOf', () => {
  it('gives the same partition in every process and version (pinned values)', () => {
    // FNV-1a 32 of the UTF-8 bytes of "<Aggregate>/<id>", then murmur3 fmix32. Changing these
    // moves aggregates between nodes of a running cluster: never change them.
    expect(partitionOf('Account', 'acc-1')).toBe(17);
    expect(partitionOf('Account', 'acc-2')).toBe(24);
    expect(partitionOf('Flight', 'AF123')).toBe(29);
    expect(partitionOf('Account', 'é-ü-😀')).toBe(60);
    expect(partitionOf('Account', 'acc-1', 1000)).toBe(233);
    expect(partitionOf('Flight', 'AF123', 2 ** 31 - 1)).toBe(3671999965 % (2 ** 31 - 1));
  });

  it('uses 64 partitions by default and stays in range for any count', () => {
    expect(DEFAULT_PARTITIONS).toBe(64);
    for (const partitions of [1, 2, 7, 64, 1000]) {
      for (let i = 0; i < 200; i++) {
        const p = partitionOf('Account', `acc-${i}`, partitions);
        expect(Number.isInteger(p) && p >= 0 && p < partitions).toBe(true);
      }
    }
    expect(partitionOf('Account', 'acc-9')).toBe(partitionOf('Account', 'acc-9', 64));
  });

  it('depends on the aggregate name as well as the id', () => {
    const ids = Array.from({ length: 64 }, (_, i) => `x-${i}`);
    const same = ids.filter((id) => partitionOf('Account', id) === partitionOf('Flight', id));
    expect(same.length).toBeLessThan(10);
  });

  it('spreads sequential ids evenly over a power-of-two count', () => {
    const ids = Array.from({ length: 64_000 }, (_, i) => `acc-${i}`);
    const counts = histogram(ids, 64);
    // 63 degrees of freedom: the 99.9th percentile of chi-square is about 103.
    expect(chiSquare(counts)).toBeLessThan(103);
    expect(Math.min(...counts)).toBeGreaterThan(850);
    expect(Math.max(...counts)).toBeLessThan(1150);
  });

  it('spreads ids that differ only in high bits of their characters', () => {
    // FNV-1a alone would map these by their low 6 bits only when taken modulo 64.
    const ids = Array.from({ length: 6_400 }, (_, i) =>
      [...i.toString(4).padStart(7, '0')].map((d) => 'aAqQ'[Number(d)]).join(''),
    );
    expect(chiSquare(histogram(ids, 64))).toBeLessThan(103);
  });

  it('spreads UUID-like ids evenly over counts that are not powers of two', () => {
    const ids = Array.from({ length: 70_000 }, (_, i) => {
      const hex = createHash('sha256').update(String(i)).digest('hex');
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
    });
    // 6 degrees of freedom: 99.9th percentile about 22.5; 999: about 1138.
    expect(chiSquare(histogram(ids, 7, 'Order'))).toBeLessThan(22.5);
    expect(chiSquare(histogram(ids, 1000, 'Order'))).toBeLessThan(1138);
  });

  it('refuses a partition count that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      let caught: unknown;
      try {
        partitionOf('Account', 'acc-1', bad);
      } catch (error) {
        caught = error;
      }
      expect(isConfigError(caught), String(bad)).toBe(true);
    }
  });
});

describe('fair share', () => {
  it('adds up to exactly the partition count, shares differing by at most one', () => {
    for (const partitions of [1, 5, 64, 100]) {
      for (let n = 1; n <= 9; n++) {
        const nodes = Array.from({ length: n }, (_, i) => `node-${(i * 7) % n}-${i}`);
        const shares = nodes.map((node) => fairShare(nodes, node, partitions));
        expect(shares.reduce((a, b) => a + b, 0)).toBe(partitions);
        expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
      }
    }
  });

  it('rounds up for the first nodes in sorted order, whatever order they are listed in', () => {
    expect(['c', 'a', 'b'].map((n) => fairShare(['c', 'a', 'b'], n, 64))).toEqual([21, 22, 21]);
    expect(fairShare(['a', 'b'], 'z', 64)).toBe(0);
  });
});

describe('the lease plan', () => {
  const base = (over: Partial<LeasePlanInput>): LeasePlanInput => ({
    self: 'a',
    partitions: 8,
    leaseMs: 1_000,
    now: 10_000,
    liveNodes: ['a'],
    held: new Set(),
    pending: new Set(),
    owners: new Map(),
    freeSince: new Map(Array.from({ length: 8 }, (_, p) => [p, 10_000] as const)),
    holdUntil: 0,
    ...over,
  });

  it('acquires every free partition when alone', () => {
    const plan = planLeases(base({}));
    expect([...plan.acquire].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(plan.release).toEqual([]);
  });

  it('acquires only up to its share, counting acquisitions in flight', () => {
    const plan = planLeases(base({ liveNodes: ['a', 'b'], pending: new Set([0]) }));
    expect(plan.acquire).toHaveLength(3);
    expect(plan.acquire).not.toContain(0);
  });

  it('hands over its least preferred extras when another node is below its share', () => {
    const held = new Set([0, 1, 2, 3, 4, 5, 6, 7]);
    const plan = planLeases(base({ liveNodes: ['a', 'b', 'c'], held, freeSince: new Map() }));
    expect(plan.release).toHaveLength(5);
    expect(plan.acquire).toEqual([]);
  });

  it('hands extras over to a node below its share, except while holding on after orphans', () => {
    const held = new Set([0, 1, 2, 3, 4, 5]);
    const owners = new Map([
      [6, 'b'],
      [7, 'b'],
    ]);
    const plan = planLeases(
      base({ liveNodes: ['a', 'b'], held, owners, freeSince: new Map(), now: 10_000 }),
    );
    // b is below its share (2 < 4) so a hands two over …
    expect(plan.release).toHaveLength(2);
    // … but not while it holds on after taking orphans.
    const held2 = planLeases(
      base({ liveNodes: ['a', 'b'], held, owners, freeSince: new Map(), holdUntil: 12_000 }),
    );
    expect(held2.release).toEqual([]);
    expect(held2.wakeAt).toBe(12_000);
  });

  it('takes partitions left free for two lease times even beyond its share', () => {
    const held = new Set([0, 1, 2, 3]);
    const owners = new Map([
      [4, 'b'],
      [5, 'b'],
    ]);
    const freeSince = new Map([
      [6, 7_000],
      [7, 9_500],
    ]);
    const plan = planLeases(base({ liveNodes: ['a', 'b'], held, owners, freeSince }));
    expect(plan.acquire).toEqual([6]);
    expect(plan.orphans).toBe(1);
    expect(plan.release).toEqual([]);
    expect(plan.wakeAt).toBe(11_500);
  });
});
