import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { createNode, isJetactorError, type NodeOptions } from '../../runtime/index.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';
import { readCommits, silentLogger } from '../fixtures/test-support.js';

const stream = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };

describe('a command sent again while its first result cannot be read back', () => {
  it('is refused with a retryable error, not decided again, and answered as a duplicate once the store reads again', async () => {
    const store = new FaultyEventStore();
    const options: NodeOptions = { domains: [bank], logger: silentLogger, store };
    const first = createNode(options);
    const account = first.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    await account.deposit({ amount: 5 });
    const withdrawn = await account.withdraw({ amount: 5 }, { commandId: 'w-1' });
    await first.stop();

    // A fresh actor replays the stream: it knows w-1 by id and commit position only.
    const second = createNode(options);
    expect((await second.view(Account, 'acc-1')).context).toMatchObject({ balance: 0 });
    // The read of w-1's commit fails; the reads after it work (a store coming back).
    let failures = 1;
    store.beforeRead = () => {
      if (failures-- > 0) throw new Error('read failed');
    };
    const error: unknown = await second
      .aggregate(Account, 'acc-1')
      .withdraw({ amount: 5 }, { commandId: 'w-1' })
      .catch((e: unknown) => e);
    // Decided again on balance 0 it would be refused with INSUFFICIENT_FUNDS, although stored.
    expect(isJetactorError(error) && error.retryable).toBe(true);
    expect(error).toMatchObject({ code: 'AGGREGATE_UNAVAILABLE' });

    store.heal();
    const again = await second
      .aggregate(Account, 'acc-1')
      .withdraw({ amount: 5 }, { commandId: 'w-1' });
    expect(again).toMatchObject({
      duplicate: true,
      version: withdrawn.version,
      position: withdrawn.position,
    });
    expect((await readCommits(store.inner, stream)).length).toBe(3);
    await second.stop();
  });
});
