import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  InMemoryEventStore,
  createNode,
  type CommandResult,
  type StreamRef,
} from '../../runtime/index.js';
import { readCommits, silentLogger } from '../fixtures/test-support.js';

const stream = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };

/** The in-memory store, counting the reads of each aggregate's commits. */
class CountingStore extends InMemoryEventStore {
  reads = 0;

  override read(id: StreamRef, after?: number) {
    this.reads += 1;
    return super.read(id, after);
  }
}

async function depositsOneByOne(count: number) {
  const store = new CountingStore();
  const node = createNode({ domains: [bank], logger: silentLogger, store });
  const account = node.aggregate(Account, 'acc-1');
  await account.open({ owner: 'ann' });
  const first: CommandResult[] = [];
  for (let i = 0; i < count; i++) {
    first.push(await account.deposit({ amount: i + 1 }, { commandId: `dep-${i}` }));
  }
  return { store, node, account, first };
}

describe('commands sent again while their actor is alive', () => {
  it('are all answered with their first results, also when more are resent at once than the actor keeps whole', async () => {
    const { store, node, account, first } = await depositsOneByOne(20);
    const again = await Promise.all(
      first.map((_, i) => account.deposit({ amount: i + 1 }, { commandId: `dep-${i}` })),
    );
    again.forEach((result, i) => {
      expect(result).toMatchObject({
        commandId: `dep-${i}`,
        duplicate: true,
        version: first[i]!.version,
        position: first[i]!.position,
        response: first[i]!.response,
      });
      expect(result.events.map((e) => e.meta.version)).toEqual(
        first[i]!.events.map((e) => e.meta.version),
      );
    });
    expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 210 });
    expect((await readCommits(store, stream)).length).toBe(21);
    await node.stop();
  });

  it('are answered by reading their first result back from their commit, one read each, without deciding them again', async () => {
    const { store, node, account, first } = await depositsOneByOne(10);
    const readsBefore = store.reads;
    const newest = await account.deposit({ amount: 10 }, { commandId: 'dep-9' });
    expect(newest).toMatchObject({
      duplicate: true,
      version: first[9]!.version,
      position: first[9]!.position,
      response: first[9]!.response,
    });
    expect(store.reads).toBe(readsBefore + 1);

    const older = await account.deposit({ amount: 1 }, { commandId: 'dep-0' });
    expect(older).toMatchObject({
      duplicate: true,
      version: first[0]!.version,
      response: first[0]!.response,
    });
    expect(store.reads).toBe(readsBefore + 2);
    expect((await readCommits(store, stream)).length).toBe(11);
    expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 55 });
    await node.stop();
  });
});
