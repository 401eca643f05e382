import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { InfrastructureError, TestClock, createNode } from '../../runtime/index.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';
import { rejectionOf, silentLogger } from '../fixtures/test-support.js';

describe('a supervisor while the store is away', () => {
  it('restarts an actor the store outage failed after the first delay every time, not a doubling one', async () => {
    const clock = new TestClock();
    const store = new FaultyEventStore();
    const node = createNode({
      domains: [bank],
      store,
      clock,
      logger: silentLogger,
      supervisor: { restartBackoffMs: 100, maxRestartBackoffMs: 30_000 },
    });
    const account = node.aggregate(Account, 'acc-1');
    store.beforeRead = () => {
      throw new InfrastructureError('STORE_UNAVAILABLE', 'JetStream did not answer');
    };
    for (let failure = 0; failure < 8; failure++) {
      expect((await rejectionOf(account.open({ owner: 'ann' }))).code).toBe('STORE_UNAVAILABLE');
      const waiting = await rejectionOf(account.open({ owner: 'ann' }));
      expect(waiting).toMatchObject({
        code: 'AGGREGATE_UNAVAILABLE',
        details: { retryAfterMs: 100 },
      });
      clock.advance(100);
    }
    store.heal();
    expect(await account.open({ owner: 'ann' })).toMatchObject({ version: 1 });
    expect(node.stats()).toMatchObject({ restarts: 8, failed: 0 });
    await node.stop();
  });

  it('still doubles the delay for an aggregate that fails for another reason', async () => {
    const clock = new TestClock();
    const store = new FaultyEventStore();
    const node = createNode({
      domains: [bank],
      store,
      clock,
      logger: silentLogger,
      supervisor: { restartBackoffMs: 100 },
    });
    const account = node.aggregate(Account, 'acc-1');
    store.beforeRead = () => {
      throw new InfrastructureError('CORRUPT_DATA', 'not a commit');
    };
    const delays: unknown[] = [];
    for (let failure = 0; failure < 3; failure++) {
      await rejectionOf(account.open({ owner: 'ann' }));
      const waiting = await rejectionOf(account.open({ owner: 'ann' }));
      delays.push(waiting.details);
      clock.advance(1_000);
    }
    expect(delays).toEqual([{ retryAfterMs: 100 }, { retryAfterMs: 200 }, { retryAfterMs: 400 }]);
    await node.stop();
  });
});
