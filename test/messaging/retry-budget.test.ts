import { describe, expect, it } from 'vitest';
import { RetryBudget } from '../../runtime/messaging/retry-budget.js';

describe('RetryBudget', () => {
  it('allows retries while more than half of its tokens are left', () => {
    const budget = new RetryBudget(10, 0.1);
    expect([1, 2, 3, 4, 5, 6].map(() => budget.failed())).toEqual([
      true,
      true,
      true,
      true,
      false,
      false,
    ]);
    expect(budget.tokens).toBe(4);
  });

  it('never goes below zero, and earns tokens back up to its size', () => {
    const budget = new RetryBudget(4, 0.5);
    for (let i = 0; i < 10; i++) budget.failed();
    expect(budget.tokens).toBe(0);
    for (let i = 0; i < 5; i++) budget.answered();
    expect(budget.tokens).toBe(2.5);
    expect(budget.failed()).toBe(false);
    for (let i = 0; i < 20; i++) budget.answered();
    expect(budget.tokens).toBe(4);
    expect(budget.failed()).toBe(true);
  });
});
