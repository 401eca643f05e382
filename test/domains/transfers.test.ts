import { describe, expect, it } from 'vitest';
import { InMemoryEventStore, createNode, type DomainNode } from '../../runtime/index.js';
import { Account, Transfer, bank } from '../../domains/bank/index.js';
import { readEvents, silentLogger, until } from '../fixtures/test-support.js';

const FINAL = ['completed', 'compensated', 'failed'];

async function startBank(store: InMemoryEventStore): Promise<DomainNode> {
  const node = createNode({ domains: [bank], store, logger: silentLogger });
  await node.start();
  return node;
}

async function account(node: DomainNode, id: string, balance: number): Promise<void> {
  await node.aggregate(Account, id).open({ owner: id });
  if (balance > 0) await node.aggregate(Account, id).deposit({ amount: balance });
}

/** The transfer once it reached a final state (fails after 5 s). */
async function settled(node: DomainNode, id: string) {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const view = await node.view(Transfer, id);
    if (FINAL.includes(String(view.value))) return view;
    if (Date.now() > deadline) throw new Error(`transfer ${id} is still ${String(view.value)}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Every aggregate's version, to see that nothing was stored. */
async function versions(node: DomainNode, ids: Record<string, string[]>) {
  const seen: Record<string, number> = {};
  for (const [aggregate, list] of Object.entries(ids)) {
    for (const id of list) seen[`${aggregate}/${id}`] = (await node.view(aggregate, id)).version;
  }
  return seen;
}

async function balanceOf(node: DomainNode, id: string): Promise<number> {
  return ((await node.view(Account, id)).context as { balance: number }).balance;
}

describe('the transfers process manager', () => {
  it('moves the money and completes the transfer', async () => {
    const node = await startBank(new InMemoryEventStore());
    await account(node, 'a', 100);
    await account(node, 'b', 0);

    await node.aggregate(Transfer, 't-1').request({ from: 'a', to: 'b', amount: 30 });

    expect((await settled(node, 't-1')).value).toBe('completed');
    expect([await balanceOf(node, 'a'), await balanceOf(node, 'b')]).toEqual([70, 30]);
    await node.stop();
  });

  it('fails without moving anything when the source refuses the withdrawal', async () => {
    const node = await startBank(new InMemoryEventStore());
    await account(node, 'a', 10);
    await account(node, 'b', 0);
    await node.aggregate(Account, 'f').open({ owner: 'f' });
    await node.aggregate(Account, 'f').deposit({ amount: 50 });
    await node.aggregate(Account, 'f').freeze({ reason: 'audit' });

    await node.aggregate(Transfer, 'poor').request({ from: 'a', to: 'b', amount: 11 });
    await node.aggregate(Transfer, 'ghost').request({ from: 'nobody', to: 'b', amount: 1 });
    await node.aggregate(Transfer, 'frozen').request({ from: 'f', to: 'b', amount: 1 });

    expect(await settled(node, 'poor')).toMatchObject({
      value: 'failed',
      context: { code: 'INSUFFICIENT_FUNDS' },
    });
    expect(await settled(node, 'ghost')).toMatchObject({
      value: 'failed',
      context: { code: 'INVALID_TRANSITION' },
    });
    expect((await settled(node, 'frozen')).value).toBe('failed');
    expect([
      await balanceOf(node, 'a'),
      await balanceOf(node, 'b'),
      await balanceOf(node, 'f'),
    ]).toEqual([10, 0, 50]);
    await node.stop();
  });

  it('pays the source back when the target is closed or was never opened', async () => {
    const store = new InMemoryEventStore();
    const node = await startBank(store);
    await account(node, 'a', 100);
    await account(node, 'closed', 0);
    await node.aggregate(Account, 'closed').close({});

    await node.aggregate(Transfer, 't-closed').request({ from: 'a', to: 'closed', amount: 40 });
    await node.aggregate(Transfer, 't-ghost').request({ from: 'a', to: 'ghost', amount: 25 });

    for (const id of ['t-closed', 't-ghost']) {
      expect(await settled(node, id)).toMatchObject({
        value: 'compensated',
        context: { code: 'INVALID_TRANSITION' },
      });
    }
    expect(await balanceOf(node, 'a')).toBe(100);
    const moves = (await readEvents(store, { domain: 'bank', aggregate: 'Account', id: 'a' }))
      .filter((e) => e.meta.commandId.startsWith('transfers:'))
      .map((e) => `${e.type} ${(e.data as { amount: number }).amount} ${e.meta.commandId}`);
    expect(moves.sort()).toEqual([
      'Deposited 25 transfers:bank/Transfer/t-ghost@3:2',
      'Deposited 40 transfers:bank/Transfer/t-closed@3:2',
      'Withdrawn 25 transfers:bank/Transfer/t-ghost@1:2',
      'Withdrawn 40 transfers:bank/Transfer/t-closed@1:2',
    ]);
    await node.stop();
  });

  it('never decides a recorded outcome again when its events are handled again', async () => {
    const store = new InMemoryEventStore();
    const first = await startBank(store);
    await account(first, 'a', 10);
    await account(first, 'b', 0);
    await first.aggregate(Transfer, 'done').request({ from: 'a', to: 'b', amount: 5 });
    await first.aggregate(Transfer, 'poor').request({ from: 'a', to: 'b', amount: 50 });
    await first.aggregate(Transfer, 'ghost').request({ from: 'a', to: 'late', amount: 5 });
    for (const id of ['done', 'poor', 'ghost']) await settled(first, id);
    await first.stop();

    // What refused before would now be accepted: only the recorded outcomes keep it from acting.
    const writer = createNode({ domains: [bank], store, logger: silentLogger });
    await writer.aggregate(Account, 'a').deposit({ amount: 100 });
    await account(writer, 'late', 0);
    const ids = { Account: ['a', 'b', 'late'], Transfer: ['done', 'poor', 'ghost'] };
    const before = await versions(writer, ids);
    await writer.stop();

    // The in-process runner reads the domain from the start: every Transfer event runs again.
    const second = await startBank(store);
    // Handled again: done's Requested and Debited, poor's Requested, ghost's three steps.
    await until(() => second.stats().reactors['bank.transfers']?.handled === 6, 5_000);
    expect(second.stats().reactors['bank.transfers']).toMatchObject({ deadLetters: 0 });
    expect(await versions(second, ids)).toEqual(before);
    expect((await second.view(Transfer, 'poor')).value).toBe('failed');
    expect((await second.view(Transfer, 'ghost')).value).toBe('compensated');
    expect([await balanceOf(second, 'a'), await balanceOf(second, 'b')]).toEqual([105, 5]);
    expect(await balanceOf(second, 'late')).toBe(0);
    await second.stop();
  });
});
