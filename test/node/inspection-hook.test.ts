import { describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { TestClock, createNode, type InspectionEvent } from '../../runtime/index.js';
import { InspectionHook } from '../../runtime/node/inspection-hook.js';

describe('inspection hook', () => {
  it('has no emit function while nothing is attached', () => {
    const hook = new InspectionHook();
    expect(hook.emit).toBeUndefined();
    const detach = hook.attach(() => undefined);
    expect(hook.emit).toBeTypeOf('function');
    detach();
    detach();
    expect(hook.emit).toBeUndefined();
    expect(hook.attached).toBe(0);
  });

  it('detaches a listener that throws and keeps calling the others', () => {
    const hook = new InspectionHook();
    const seen: string[] = [];
    hook.attach(() => {
      throw new Error('broken page');
    });
    hook.attach((event) => seen.push(event.kind));
    const event: InspectionEvent = {
      kind: 'reply',
      at: 0,
      aggregate: 'Account',
      id: 'a',
      command: 'open',
      ok: true,
    };
    hook.emit?.(event);
    hook.emit?.(event);
    expect(seen).toEqual(['reply', 'reply']);
    expect(hook.attached).toBe(1);
  });
});

describe('node inspection', () => {
  it('reports commands, replies and commits while attached, and nothing after detaching', async () => {
    const clock = new TestClock(1_000);
    const node = createNode({ domains: [bank], clock });
    const seen: InspectionEvent[] = [];
    const detach = node.inspect((event) => seen.push(event));

    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' }, { commandId: 'c-1' });
    await node
      .aggregate(Account, 'acc-1')
      .withdraw({ amount: 5 })
      .catch(() => undefined);
    await node
      .execute({ aggregate: 'Vault', id: 'v-1', command: 'open', input: {} })
      .catch(() => undefined);
    await new Promise((resolve) => setImmediate(resolve));

    expect(seen).toEqual([
      {
        kind: 'command',
        at: 1_000,
        domain: 'bank',
        aggregate: 'Account',
        id: 'acc-1',
        command: 'open',
        commandId: 'c-1',
        input: { owner: 'ann', overdraftLimit: 0 },
      },
      expect.objectContaining({
        kind: 'commit',
        domain: 'bank',
        aggregate: 'Account',
        id: 'acc-1',
        version: 1,
        value: 'open',
        events: [expect.objectContaining({ type: 'Opened' })],
      }),
      expect.objectContaining({ kind: 'reply', commandId: 'c-1', ok: true, version: 1, events: 1 }),
      expect.objectContaining({ kind: 'command', command: 'withdraw' }),
      expect.objectContaining({
        kind: 'reply',
        command: 'withdraw',
        ok: false,
        error: expect.objectContaining({ code: 'INSUFFICIENT_FUNDS' }),
      }),
      expect.objectContaining({
        kind: 'reply',
        aggregate: 'Vault',
        id: 'v-1',
        ok: false,
        error: expect.objectContaining({ code: 'UNKNOWN_AGGREGATE' }),
      }),
    ]);

    detach();
    seen.length = 0;
    await node.aggregate(Account, 'acc-1').deposit({ amount: 1 });
    expect(seen).toEqual([]);
    await node.stop();
  });

  it('lists its live actors with their state', async () => {
    const node = createNode({ domains: [bank] });
    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await node.aggregate(Account, 'acc-2').open({ owner: 'bob' });
    await node.aggregate(Account, 'acc-2').freeze({ reason: '' });
    expect([...node.actors()]).toEqual([
      {
        domain: 'bank',
        aggregate: 'Account',
        id: 'acc-1',
        lifecycle: 'ready',
        value: 'open',
        version: 1,
        mailboxDepth: 0,
      },
      {
        domain: 'bank',
        aggregate: 'Account',
        id: 'acc-2',
        lifecycle: 'ready',
        value: 'frozen',
        version: 2,
        mailboxDepth: 0,
      },
    ]);
    await node.stop();
  });
});
