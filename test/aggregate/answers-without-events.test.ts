import { describe, expect, it } from 'vitest';
import { Account, Transfer } from '../../domains/bank/index.js';
import { InMemoryEventStore, createNode, defineDomain } from '../../runtime/index.js';
import { rejectionOf, silentLogger } from '../fixtures/test-support.js';

// Reactors are left out: each node here only answers commands.
const accounts = defineDomain({ name: 'bank', aggregates: [Account, Transfer] });

/** Two nodes on one store, as two processes on one stream: each has its own actors. */
function twoNodes() {
  const store = new InMemoryEventStore();
  const a = createNode({ domains: [accounts], store, logger: silentLogger });
  const b = createNode({ domains: [accounts], store, logger: silentLogger });
  return { a, b };
}

describe('answers that store nothing', () => {
  it('refuses a command only on the state the store has now, not on an actor that missed commits of another node', async () => {
    const { a, b } = twoNodes();
    await a.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    expect(await a.view(Account, 'acc-1')).toMatchObject({ version: 1, context: { balance: 0 } });
    await b.aggregate(Account, 'acc-1').deposit({ amount: 10 });
    // a's actor still holds balance 0; the withdrawal is decided on the balance of 10.
    const withdrawn = await a.aggregate(Account, 'acc-1').withdraw({ amount: 4 });
    expect(withdrawn).toMatchObject({ version: 3, response: { balance: 6 } });
    const refused = await rejectionOf(a.aggregate(Account, 'acc-1').withdraw({ amount: 7 }));
    expect(refused).toMatchObject({ code: 'INSUFFICIENT_FUNDS', details: { balance: 6 } });
    await Promise.all([a.stop(), b.stop()]);
  });

  it('answers a read-only command from the latest stored state', async () => {
    const { a, b } = twoNodes();
    const transfer = { from: 'acc-1', to: 'acc-2', amount: 5 };
    await a.aggregate(Transfer, 't-1').request(transfer);
    expect((await a.aggregate(Transfer, 't-1').status({})).response.status).toBe('requested');
    await b.aggregate(Transfer, 't-1').debit({});
    const status = await a.aggregate(Transfer, 't-1').status({});
    expect(status).toMatchObject({ version: 2, response: { status: 'debited' } });
    await Promise.all([a.stop(), b.stop()]);
  });

  it('answers a resend of a command another node stored as a duplicate, where the stale actor would refuse it', async () => {
    const { a, b } = twoNodes();
    await a.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    expect(await a.view(Account, 'acc-1')).toMatchObject({ version: 1, context: { balance: 0 } });
    await b.aggregate(Account, 'acc-1').deposit({ amount: 5 });
    const first = await b.aggregate(Account, 'acc-1').withdraw({ amount: 5 }, { commandId: 'w-1' });
    // On a's balance of 0 the resend would be refused, as if it had never been applied.
    const again = await a.aggregate(Account, 'acc-1').withdraw({ amount: 5 }, { commandId: 'w-1' });
    expect(again).toMatchObject({ version: first.version, duplicate: true });
    expect(await a.view(Account, 'acc-1')).toMatchObject({ version: 3, context: { balance: 0 } });
    await Promise.all([a.stop(), b.stop()]);
  });
});
