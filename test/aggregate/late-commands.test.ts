import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { TestClock, createNode, isJetactorError } from '../../runtime/index.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';
import { readCommits, silentLogger } from '../fixtures/test-support.js';

const stream = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };

describe('a command whose sender stopped waiting before it started', () => {
  it('is answered DEADLINE_EXCEEDED and not run; commands with time left, or none given, are', async () => {
    const store = new FaultyEventStore();
    const clock = new TestClock();
    const node = createNode({ domains: [bank], logger: silentLogger, store, clock });
    const account = node.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });

    // A commit that hangs (a slow store), with commands queued behind it.
    let release = () => {};
    store.beforeAppend = () => new Promise<void>((resolve) => (release = resolve));
    const held = account.deposit({ amount: 1 }, { commandId: 'held' });
    await new Promise((resolve) => setTimeout(resolve, 10));
    const late = account
      .deposit({ amount: 10 }, { commandId: 'late', timeoutMs: 500 })
      .catch((e: unknown) => e);
    const inTime = account.deposit({ amount: 100 }, { commandId: 'in-time', timeoutMs: 5_000 });
    const unbounded = account.deposit({ amount: 1_000 }, { commandId: 'unbounded' });
    clock.advance(1_000);
    store.beforeAppend = undefined;
    release();

    await held;
    const error = await late;
    expect(isJetactorError(error) && error.retryable).toBe(true);
    expect(error).toMatchObject({
      code: 'DEADLINE_EXCEEDED',
      details: { commandId: 'late', lateMs: 500 },
    });
    expect((error as Error).message).toContain('"late"');
    expect((error as Error).message).toContain('same command id');
    await expect(inTime).resolves.toMatchObject({ duplicate: false });
    await expect(unbounded).resolves.toMatchObject({ duplicate: false });

    const ids = (await readCommits(store.inner, stream)).flatMap((c) =>
      c.commands.map((r) => r.id),
    );
    expect(ids).not.toContain('late');
    expect(ids).toEqual(expect.arrayContaining(['held', 'in-time', 'unbounded']));
    expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 1_101 });

    // Sent again with the same id and time to run, it is run once.
    await expect(
      account.deposit({ amount: 10 }, { commandId: 'late', timeoutMs: 500 }),
    ).resolves.toMatchObject({ duplicate: false });
    expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 1_111 });
    await node.stop();
  });

  it.each([0, -1, 1.5, 86_400_001, '100'])(
    'refuses timeoutMs %j with INVALID_COMMAND naming the field',
    async (timeoutMs) => {
      const node = createNode({ domains: [bank], logger: silentLogger });
      const error = await node
        .execute({
          aggregate: 'Account',
          id: 'acc-1',
          command: 'open',
          input: { owner: 'ann' },
          timeoutMs: timeoutMs as number,
        })
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'INVALID_COMMAND' });
      expect((error as Error).message).toContain('timeoutMs');
      expect(await readCommits(node.store, stream)).toEqual([]);
      await node.stop();
    },
  );
});
