import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  InMemoryEventStore,
  createNode,
  isInfrastructureError,
  isRejectionError,
  replayAggregate,
} from '../../runtime/index.js';

async function bankWithHistory() {
  const store = new InMemoryEventStore();
  const node = createNode({ domains: [bank], store });
  const account = node.aggregate(Account, 'acc-1');
  await account.open({ owner: 'ann' });
  await account.deposit({ amount: 10 });
  await account.freeze({ reason: 'audit' });
  await account.deposit({ amount: 5 });
  await account.unfreeze({});
  await node.stop();
  return store;
}

describe('replaying an aggregate at a version', () => {
  it('folds the stored events up to the version asked for', async () => {
    const store = await bankWithHistory();
    const replay = (version?: number) =>
      replayAggregate({ store, domain: 'bank', definition: Account, id: 'acc-1', version });

    const latest = await replay();
    expect(latest).toMatchObject({
      version: 5,
      latestVersion: 5,
      value: 'open',
      context: { owner: 'ann', balance: 15 },
      status: 'active',
      event: { type: 'Unfrozen' },
    });
    expect(latest.history.map((e) => e.type)).toEqual([
      'Opened',
      'Deposited',
      'Frozen',
      'Deposited',
      'Unfrozen',
    ]);

    expect(await replay(3)).toMatchObject({
      version: 3,
      latestVersion: 5,
      value: 'frozen',
      context: { balance: 10 },
      event: { type: 'Frozen', data: { reason: 'audit' } },
    });
    const initial = await replay(0);
    expect(initial).toMatchObject({
      version: 0,
      position: 0,
      value: 'new',
      context: { balance: 0 },
    });
    expect(initial.event).toBeUndefined();
    expect(initial.history).toHaveLength(5);
  });

  it('shows an aggregate with no events in its initial state', async () => {
    const store = new InMemoryEventStore();
    const replayed = await replayAggregate({
      store,
      domain: 'bank',
      definition: Account,
      id: 'nobody',
    });
    expect(replayed).toMatchObject({ version: 0, latestVersion: 0, value: 'new', history: [] });
  });

  it('refuses a version beyond the latest, naming the range', async () => {
    const store = await bankWithHistory();
    const error: unknown = await replayAggregate({
      store,
      domain: 'bank',
      definition: Account,
      id: 'acc-1',
      version: 9,
    }).catch((e: unknown) => e);
    expect(isRejectionError(error) && error.code).toBe('INVALID_REQUEST');
    expect((error as Error).message).toContain('from 0 to 5');
  });

  it('keeps only the latest events in the history when asked to', async () => {
    const store = await bankWithHistory();
    const replayed = await replayAggregate({
      store,
      domain: 'bank',
      definition: Account,
      id: 'acc-1',
      version: 1,
      maxHistory: 2,
    });
    expect(replayed.history.map((e) => e.meta.version)).toEqual([4, 5]);
    expect(replayed.value).toBe('open');
  });

  it('fails with REPLAY_FAILED on a stored event the machine does not accept', async () => {
    const store = new InMemoryEventStore();
    const stream = { domain: 'bank', aggregate: 'Account', id: 'bad' };
    const meta = (version: number) => ({
      domain: 'bank',
      aggregate: 'Account',
      aggregateId: 'bad',
      version,
      timestamp: 0,
      commandId: `c${version}`,
      correlationId: `c${version}`,
      causationId: `c${version}`,
    });
    await store.append({
      stream,
      expectedPosition: 0,
      dedupId: 'd1',
      events: [{ type: 'Deposited', data: { amount: 1 }, meta: meta(1) }],
      commands: [{ id: 'c1' }],
    });
    const error: unknown = await replayAggregate({
      store,
      domain: 'bank',
      definition: Account,
      id: 'bad',
    }).catch((e: unknown) => e);
    expect(isInfrastructureError(error) && error.code).toBe('REPLAY_FAILED');
    expect((error as Error).message).toMatch(/state "new" does not accept it/);
  });
});
