import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  InMemoryEventStore,
  TestClock,
  createNode,
  defineDomain,
  defineReactor,
  type CommandResult,
  type Logger,
  type ReactorDefinition,
} from '../../runtime/index.js';
import { Account } from '../../domains/bank/index.js';
import {
  captureLogger,
  deferred,
  flush,
  readEvents,
  silentLogger,
  until,
} from '../fixtures/test-support.js';

const acc = (id: string) => ({ domain: 'bank', aggregate: 'Account', id });

function start(
  reactors: ReactorDefinition<any>[],
  options: { store?: InMemoryEventStore; clock?: TestClock; logger?: Logger } = {},
) {
  const clock = options.clock ?? new TestClock();
  const store = options.store ?? new InMemoryEventStore({ clock });
  const node = createNode({
    domains: [defineDomain({ name: 'bank', aggregates: [Account], reactors })],
    store,
    clock,
    logger: options.logger ?? silentLogger,
  });
  return { node, store, clock };
}

describe('in-process reactors', () => {
  it('runs the handler for each event once it is stored, in the order of the domain log', async () => {
    const seen: string[] = [];
    const storedWhenSeen: boolean[] = [];
    const store = new InMemoryEventStore();
    const ledger = defineReactor({
      name: 'ledger',
      aggregates: [Account],
      on: {
        'Account.Deposited': async (event) => {
          expectTypeOf(event.data.amount).toBeNumber();
          seen.push(`${event.meta.aggregateId}+${event.data.amount}@${event.meta.version}`);
          const events = await readEvents(store, acc(event.meta.aggregateId));
          storedWhenSeen.push(events.some((e) => e.meta.version === event.meta.version));
        },
        'Account.Withdrawn': (event) => {
          seen.push(`${event.meta.aggregateId}-${event.data.amount}@${event.meta.version}`);
        },
      },
    });
    const { node } = start([ledger], { store });
    await node.start();
    const a = node.aggregate(Account, 'acc-a');
    const b = node.aggregate(Account, 'acc-b');
    await a.open({ owner: 'ann' });
    await b.open({ owner: 'bob' });
    await a.deposit({ amount: 5 });
    await b.deposit({ amount: 7 });
    await a.withdraw({ amount: 2 });
    await Promise.all([a.deposit({ amount: 1 }), a.deposit({ amount: 2 })]);

    await until(() => seen.length === 5);
    expect(seen).toEqual(['acc-a+5@2', 'acc-b+7@2', 'acc-a-2@3', 'acc-a+1@4', 'acc-a+2@5']);
    expect(storedWhenSeen).toEqual([true, true, true, true]);
    await node.stop();
  });

  it('delivers events stored before the node started its reactors', async () => {
    const seen: number[] = [];
    const ledger = defineReactor({
      name: 'ledger',
      aggregates: [Account],
      on: { 'Account.Deposited': (event) => void seen.push(event.data.amount) },
    });
    const { node } = start([ledger]);
    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await node.aggregate(Account, 'acc-1').deposit({ amount: 3 });
    await flush();
    expect(seen).toEqual([]);

    await node.start();
    await until(() => seen.length === 1);
    expect(seen).toEqual([3]);
    await node.stop();
  });

  it('retries a failing handler with doubling backoff, then dead-letters the event and moves on', async () => {
    const { logger, records } = captureLogger();
    const tries: number[] = [];
    const handled: number[] = [];
    const clock = new TestClock(0);
    const fragile = defineReactor({
      name: 'fragile',
      aggregates: [Account],
      retry: { attempts: 3, backoffMs: 100 },
      on: {
        'Account.Deposited': (event) => {
          if (event.data.amount === 13) {
            tries.push(clock.now());
            throw new Error('unlucky number');
          }
          handled.push(event.data.amount);
        },
      },
    });
    const { node } = start([fragile], { clock, logger });
    await node.start();
    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await node.aggregate(Account, 'acc-1').deposit({ amount: 13 });
    await node.aggregate(Account, 'acc-1').deposit({ amount: 1 });

    await until(() => tries.length === 1);
    clock.advance(99);
    await flush();
    expect(tries).toEqual([0]);
    clock.advance(1);
    await until(() => tries.length === 2);
    clock.advance(200);
    await until(() => handled.length === 1);

    expect(tries).toEqual([0, 100, 300]);
    expect(handled).toEqual([1]);
    expect(node.stats().deadLetters).toBe(1);
    const retries = records.filter((r) => r.msg === 'reactor handler failed; retrying');
    expect(retries.map((r) => r.retryInMs)).toEqual([100, 200]);
    const gaveUp = records.find((r) => String(r.msg).includes('gave up'));
    expect(gaveUp).toMatchObject({ reactor: 'fragile', attempts: 3, type: 'Deposited' });
    expect(String(gaveUp?.msg)).toContain('unlucky number');
    await node.stop();
  });

  it('does not dead-letter an event whose handler succeeds on a retry', async () => {
    let tries = 0;
    const clock = new TestClock();
    const flaky = defineReactor({
      name: 'flaky',
      aggregates: [Account],
      retry: { attempts: 3, backoffMs: 10 },
      on: {
        'Account.Opened': () => {
          tries += 1;
          if (tries < 3) throw new Error('not yet');
        },
      },
    });
    const { node } = start([flaky], { clock });
    await node.start();
    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await until(() => tries === 1);
    clock.advance(10);
    await until(() => tries === 2);
    clock.advance(20);
    await until(() => tries === 3);

    expect(node.stats().deadLetters).toBe(0);
    await node.stop();
  });

  it('sends commands with ids derived from the event, so handling it again does not act twice', async () => {
    const replies: CommandResult[] = [];
    const failedOnce = new Set<string>();
    const clock = new TestClock();
    const welcome = defineReactor({
      name: 'welcome',
      aggregates: [Account],
      retry: { attempts: 3, backoffMs: 10 },
      on: {
        'Account.Opened': async (event, ctx) => {
          replies.push(
            await ctx.send({
              aggregate: 'Account',
              id: event.meta.aggregateId,
              command: 'deposit',
              input: { amount: 100 },
            }),
          );
          if (!failedOnce.has(event.meta.aggregateId)) {
            failedOnce.add(event.meta.aggregateId);
            throw new Error('mail server down');
          }
        },
      },
    });
    const { node, store } = start([welcome], { clock });
    await node.start();
    const opened = await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await until(() => replies.length === 1);
    clock.advance(10);
    await until(() => replies.length === 2);

    const [first, second] = replies;
    expect(first?.duplicate).toBe(false);
    expect(second).toEqual({ ...first, duplicate: true });
    expect(first?.events[0]?.meta).toMatchObject({
      commandId: 'welcome:bank/Account/acc-1@1:1',
      correlationId: opened.commandId,
      causationId: 'bank/Account/acc-1@1',
    });
    await node.stop();

    const { node: rerun } = start([welcome], { store, clock });
    await rerun.start();
    await until(() => replies.length === 3);
    expect(replies[2]).toEqual({ ...first, duplicate: true });
    const events = await readEvents(store, acc('acc-1'));
    expect(events.map((e) => e.type)).toEqual(['Opened', 'Deposited']);
    expect((await rerun.view(Account, 'acc-1')).context).toMatchObject({ balance: 100 });
    await rerun.stop();
  });

  it('stops delivering when the node stops', async () => {
    const seen: string[] = [];
    const ledger = defineReactor({
      name: 'ledger',
      aggregates: [Account],
      on: { 'Account.Opened': (event) => void seen.push(event.meta.aggregateId) },
    });
    const { node, store } = start([ledger]);
    await node.start();
    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await until(() => seen.length === 1);
    await node.stop();

    const { node: other } = start([], { store });
    await other.aggregate(Account, 'acc-2').open({ owner: 'bob' });
    await flush();
    expect(seen).toEqual(['acc-1']);
  });

  it('lets a handler running when the node stops finish the commands it sends', async () => {
    const gate = deferred();
    const sent: CommandResult[] = [];
    const welcome = defineReactor({
      name: 'welcome',
      aggregates: [Account],
      retry: { attempts: 1, backoffMs: 10 },
      on: {
        'Account.Opened': async (event, ctx) => {
          await gate.promise;
          sent.push(
            await ctx.send({
              aggregate: 'Account',
              id: event.meta.aggregateId,
              command: 'deposit',
              input: { amount: 100 },
            }),
          );
        },
      },
    });
    const { node, store } = start([welcome]);
    await node.start();
    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await flush();

    const stopping = node.stop(1_000);
    await flush();
    gate.resolve();
    await stopping;

    expect(sent).toHaveLength(1);
    expect(node.stats().deadLetters).toBe(0);
    expect((await readEvents(store, acc('acc-1'))).map((e) => e.type)).toEqual([
      'Opened',
      'Deposited',
    ]);
  });
});
