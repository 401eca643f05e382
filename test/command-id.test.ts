import { describe, expect, it } from 'vitest';
import { randomCommandId } from '../runtime/index.js';

const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('randomCommandId', () => {
  it('makes version 4 UUIDs, as crypto.randomUUID does', () => {
    for (let i = 0; i < 1000; i++) expect(randomCommandId()).toMatch(uuidV4);
  });

  it('never repeats, across many refills of its random bytes', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) seen.add(randomCommandId());
    expect(seen.size).toBe(20_000);
  });

  it('returns strings that the next id does not change (the buffer it writes in is reused)', () => {
    const first = randomCommandId();
    const copy = `${first}`;
    randomCommandId();
    expect(first).toBe(copy);
    expect(first).toHaveLength(36);
  });

  it('spreads its random digits over every hex value', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      for (const digit of randomCommandId().replaceAll('-', '').slice(13)) {
        counts.set(digit, (counts.get(digit) ?? 0) + 1);
      }
    }
    expect(counts.size).toBe(16);
    // 2000 ids × 19 digits / 16 values ≈ 2375 each (the variant digit skews four values a little).
    for (const count of counts.values()) expect(count).toBeGreaterThan(1900);
  });
});
