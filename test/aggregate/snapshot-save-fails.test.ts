import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  InMemoryEventStore,
  createNode,
  type Snapshot,
  type SnapshotStore,
  type StreamRef,
} from '../../runtime/index.js';
import { captureLogger } from '../fixtures/test-support.js';

/** A snapshot store whose server is down: every save fails at once, as a 503 does. */
class DownSnapshotStore implements SnapshotStore {
  saves = 0;
  load(): Promise<Snapshot | undefined> {
    return Promise.resolve(undefined);
  }
  save(_stream: StreamRef, _snapshot: Snapshot): Promise<void> {
    this.saves += 1;
    // Failing on a later turn of the event loop, as a reply from the server does.
    return new Promise((_resolve, reject) =>
      setImmediate(() => reject(new Error('no stream answered (503)'))),
    );
  }
}

describe('an actor whose snapshot saves fail', () => {
  it('tries again after snapshotEvery more events, not in a loop, and keeps answering', async () => {
    const snapshots = new DownSnapshotStore();
    const { logger, records } = captureLogger();
    const node = createNode({
      domains: [bank],
      logger,
      store: new InMemoryEventStore(),
      snapshots,
      supervisor: { snapshotEvery: 5 },
    });
    const account = node.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    for (let i = 0; i < 11; i++) await account.deposit({ amount: 1 });
    // Let any retry loop spin for a while.
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Versions 5 and 10 reached the threshold: one try each.
    expect(snapshots.saves).toBe(2);
    expect(records.filter((r) => r.msg === 'snapshot not saved')).toHaveLength(2);
    expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 11 });
    await node.stop();
  });
});
