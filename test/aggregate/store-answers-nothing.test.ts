import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  ConflictError,
  TestClock,
  createNode,
  type AppendRequest,
  type AppendResult,
} from '../../runtime/index.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';
import { rejectionOf, silentLogger } from '../fixtures/test-support.js';

/**
 * A custom store with a defect: while `broken`, an append stores its commit and then resolves
 * with nothing instead of an {@link AppendResult}.
 */
class AnswersNothing extends FaultyEventStore {
  broken = false;

  override async append(request: AppendRequest): Promise<AppendResult> {
    const result = await super.append(request);
    return this.broken ? (undefined as unknown as AppendResult) : result;
  }
}

function start() {
  const store = new AnswersNothing();
  const clock = new TestClock();
  const node = createNode({ domains: [bank], logger: silentLogger, store, clock });
  // Past the supervisor's restart backoff.
  const later = () => clock.advance(60_000);
  return { node, store, later };
}

describe('a store that answers an append with nothing (a defect)', () => {
  it('fails the actor with a typed error, and the next command restarts it on what was stored', async () => {
    const { node, store, later } = start();
    const account = node.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    store.broken = true;
    const failed = await rejectionOf(account.deposit({ amount: 5 }));
    expect(failed.code).toBe('AGGREGATE_UNAVAILABLE');
    expect(failed.message).toContain('Account "acc-1"');
    expect(failed.message).toContain('send the command again');

    store.broken = false;
    later();
    // The deposit was stored before the store answered nothing: the restarted actor replays it.
    const reply = await account.deposit({ amount: 7 });
    expect(reply.response).toEqual({ balance: 12 });
    expect(store.stored).toHaveLength(3);
    await node.stop();
  });

  it('does the same when the append that answers nothing follows a conflict', async () => {
    const { node, store, later } = start();
    const account = node.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    let calls = 0;
    store.beforeAppend = () => {
      calls += 1;
      // The first try conflicts; the second, decided again, stores and answers nothing.
      if (calls === 1) throw new ConflictError('CONCURRENCY_CONFLICT', 'another writer first');
      store.broken = true;
    };
    const failed = await rejectionOf(account.deposit({ amount: 5 }));
    expect(failed.code).toBe('AGGREGATE_UNAVAILABLE');
    expect(calls).toBe(2);

    store.heal();
    store.broken = false;
    later();
    const reply = await account.deposit({ amount: 1 });
    expect(reply.response).toEqual({ balance: 6 });
    await node.stop();
  });

  it('rejects the commands that waited behind the broken commit, and serves other aggregates', async () => {
    const { node, store } = start();
    const account = node.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    await node.aggregate(Account, 'acc-2').open({ owner: 'bob' });
    store.broken = true;
    const sent = [1, 2, 3].map((amount) => account.deposit({ amount }));
    const settled = await Promise.allSettled(sent);
    for (const outcome of settled) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({
        code: 'AGGREGATE_UNAVAILABLE',
      });
    }
    store.broken = false;
    expect((await node.aggregate(Account, 'acc-2').deposit({ amount: 2 })).response).toEqual({
      balance: 2,
    });
    await node.stop();
  });
});
