import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  InMemoryEventStore,
  InMemorySnapshotStore,
  createNode,
  type NodeOptions,
} from '../../runtime/index.js';
import { readCommits, silentLogger, until } from '../fixtures/test-support.js';

const stream = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };

function nodes(snapshotEvery = 2) {
  const store = new InMemoryEventStore();
  const snapshots = new InMemorySnapshotStore();
  const options: NodeOptions = {
    domains: [bank],
    logger: silentLogger,
    store,
    snapshots,
    supervisor: { snapshotEvery },
  };
  return { store, snapshots, start: () => createNode(options) };
}

describe('a command sent again after the actor restarted from a snapshot', () => {
  it('is answered with its first result, also when it was committed together with others', async () => {
    const { store, snapshots, start } = nodes();
    const first = start();
    const account = first.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    // Sent together, the two deposits leave in one commit, deduplicated by the store under one id.
    const [x, y] = await Promise.all([
      account.deposit({ amount: 5 }, { commandId: 'dep-x' }),
      account.deposit({ amount: 6 }, { commandId: 'dep-y' }),
    ]);
    expect(x.position).toBe(y.position);
    await until(() => snapshots.size === 1);
    await first.stop();

    const second = start();
    const again = await second
      .aggregate(Account, 'acc-1')
      .deposit({ amount: 5 }, { commandId: 'dep-x' });
    expect(again).toMatchObject({
      commandId: 'dep-x',
      duplicate: true,
      version: x.version,
      response: x.response,
      position: x.position,
    });
    const other = await second
      .aggregate(Account, 'acc-1')
      .deposit({ amount: 6 }, { commandId: 'dep-y' });
    expect(other).toMatchObject({ duplicate: true, version: y.version });
    expect((await second.view(Account, 'acc-1')).context).toMatchObject({ balance: 11 });
    expect((await readCommits(store, stream)).length).toBe(2);
    await second.stop();
  });

  it('still starts from a snapshot that lists no commands, as older versions wrote them', async () => {
    const { snapshots, start } = nodes();
    const first = start();
    await first.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await first.aggregate(Account, 'acc-1').deposit({ amount: 5 });
    await until(() => snapshots.size === 1);
    await first.stop();
    const saved = await snapshots.load(stream);
    expect(saved?.commands?.length).toBe(2);
    const { commands: _commands, ...older } = saved!;
    await snapshots.save(stream, older);

    const second = start();
    const result = await second.aggregate(Account, 'acc-1').deposit({ amount: 1 });
    expect(result).toMatchObject({ version: 3, response: { balance: 6 } });
    await second.stop();
  });
});

describe('a command sent again after the actor replayed its commits', () => {
  it('is answered with its first result, events included, also when it was committed together with others', async () => {
    const { store, start } = nodes(0);
    const first = start();
    const account = first.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    const [x, y] = await Promise.all([
      account.deposit({ amount: 5 }, { commandId: 'dep-x' }),
      account.deposit({ amount: 6 }, { commandId: 'dep-y' }),
    ]);
    expect(x.position).toBe(y.position);
    await first.stop();

    const second = start();
    const ref = second.aggregate(Account, 'acc-1');
    // Another command first, so the actor has replayed before the resend comes.
    await ref.deposit({ amount: 1 }, { commandId: 'dep-z' });
    const again = await ref.deposit({ amount: 6 }, { commandId: 'dep-y' });
    expect(again).toEqual({ ...y, duplicate: true });
    expect((await second.view(Account, 'acc-1')).context).toMatchObject({ balance: 12 });
    expect((await readCommits(store, stream)).length).toBe(3);
    await second.stop();
  });
});
