import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { InMemoryEventStore, createNode, type NodeOptions } from '../../runtime/index.js';
import { readCommits, silentLogger } from '../fixtures/test-support.js';

const stream = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };

describe('commands another node stored, read by a catch-up', () => {
  it('are remembered as the newest, also when the actor’s own commands fill recentCommands', async () => {
    const store = new InMemoryEventStore();
    const options: NodeOptions = {
      domains: [bank],
      logger: silentLogger,
      store,
      supervisor: { recentCommands: 4, snapshotEvery: 0 },
    };
    const a = createNode(options);
    const b = createNode(options);
    await a.aggregate(Account, 'acc-1').open({ owner: 'ann' }, { commandId: 'open' });
    for (const id of ['a1', 'a2', 'a3', 'a4']) {
      await a.aggregate(Account, 'acc-1').deposit({ amount: 1 }, { commandId: id });
    }
    // Node b stores x; node a learns it when its next commit conflicts and it catches up.
    const x = await b.aggregate(Account, 'acc-1').deposit({ amount: 10 }, { commandId: 'x' });
    await a.aggregate(Account, 'acc-1').deposit({ amount: 1 }, { commandId: 'a5' });

    // Sent again behind another command, x leaves in a commit with y: the store's deduplication,
    // by commit, cannot catch it; only the actor's memory can.
    const account = a.aggregate(Account, 'acc-1');
    const [, , again] = await Promise.all([
      account.deposit({ amount: 1 }, { commandId: 'a6' }),
      account.deposit({ amount: 1 }, { commandId: 'y' }),
      account.deposit({ amount: 10 }, { commandId: 'x' }),
    ]);
    expect(again).toMatchObject({ duplicate: true, version: x.version, position: x.position });
    const commits = await readCommits(store, stream);
    expect(commits.filter((c) => c.commands.some((r) => r.id === 'x'))).toHaveLength(1);
    expect((await a.view(Account, 'acc-1')).context).toMatchObject({ balance: 17 });
    await Promise.all([a.stop(), b.stop()]);
  });
});
