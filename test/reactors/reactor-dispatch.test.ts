import { describe, expect, it } from 'vitest';
import { Account } from '../../domains/bank/index.js';
import {
  InMemoryEventStore,
  InProcessReactors,
  TestClock,
  createNode,
  defineDomain,
  defineReactor,
  isConfigError,
  type ReactorDefinition,
  type StoredEvent,
} from '../../runtime/index.js';
import { Probe } from '../fixtures/probe.js';
import { deferred, flush, rejectionOf, silentLogger, until } from '../fixtures/test-support.js';

function start(reactors: ReactorDefinition<any>[], clock = new TestClock()) {
  const store = new InMemoryEventStore({ clock });
  const node = createNode({
    domains: [defineDomain({ name: 'bank', aggregates: [Account, Probe], reactors })],
    store,
    clock,
    logger: silentLogger,
  });
  return { node, store, clock };
}

/** Lets retries due on the test clock run, until `condition` holds. */
async function advanceUntil(clock: TestClock, condition: () => boolean, stepMs = 5): Promise<void> {
  for (let i = 0; i < 10_000 && !condition(); i++) {
    clock.advance(stepMs);
    await flush();
  }
  expect(condition()).toBe(true);
}

describe('reactor dispatch (shared by the in-process and JetStream hosts)', () => {
  it('handles events of one aggregate one after another, other aggregates in parallel up to concurrency, through retries', async () => {
    const running = new Set<string>();
    const order = new Map<string, number[]>();
    const tries = new Map<string, number>();
    let parallel = 0;
    let overlap = false;
    const gates: (() => void)[] = [];
    const reactor = defineReactor({
      name: 'ordered',
      aggregates: [Account],
      concurrency: 3,
      retry: { attempts: 4, backoffMs: 10 },
      on: {
        'Account.Deposited': async (event) => {
          const id = event.meta.aggregateId;
          overlap ||= running.has(id);
          running.add(id);
          parallel = Math.max(parallel, running.size);
          await new Promise<void>((resolve) => gates.push(resolve));
          running.delete(id);
          const key = `${id}@${event.meta.version}`;
          const attempt = (tries.get(key) ?? 0) + 1;
          tries.set(key, attempt);
          if (event.meta.version % 2 === 0 && attempt === 1) throw new Error('first try fails');
          order.set(id, [...(order.get(id) ?? []), event.meta.version]);
        },
      },
    });
    const { node, clock } = start([reactor]);
    const ids = ['a', 'b', 'c', 'd', 'e'];
    for (const id of ids) await node.aggregate(Account, id).open({ owner: id });
    for (let i = 0; i < 4; i++) {
      for (const id of ids) await node.aggregate(Account, id).deposit({ amount: 1 });
    }
    await node.start();
    const done = () => ids.every((id) => (order.get(id) ?? []).length === 4);
    for (let i = 0; i < 1_000 && !done(); i++) {
      gates.splice(0).forEach((open) => open());
      clock.advance(10);
      await flush();
    }
    for (const id of ids) expect(order.get(id), id).toEqual([2, 3, 4, 5]);
    expect(overlap).toBe(false);
    expect(parallel).toBe(3);
    expect(node.stats().reactors['bank.ordered']).toMatchObject({
      handled: 20,
      retries: 10,
      inFlight: 0,
      deadLetters: 0,
    });
    await node.stop();
  });

  it("with 'wait', holds an aggregate behind its dead letter; a replay runs it and the rest of its commit, then the held events", async () => {
    let broken = true;
    const handled: string[] = [];
    const reactor = defineReactor({
      name: 'notes',
      aggregates: [Probe],
      deadLetters: 'wait',
      retry: { attempts: 2, backoffMs: 10 },
      on: {
        'Probe.Noted': (event) => {
          if (event.data.text === 'bad' && broken) throw new Error('cannot take "bad"');
          handled.push(`${event.meta.aggregateId}:${event.data.text}@${event.meta.version}`);
        },
      },
    });
    const { node, clock } = start([reactor]);
    await node.start();
    await node.aggregate(Probe, 'p').noteAll({ texts: ['one', 'bad', 'three'] });
    await node.aggregate(Probe, 'p').note({ text: 'four' });
    await node.aggregate(Probe, 'q').note({ text: 'other' });
    await advanceUntil(clock, () => node.stats().reactors['bank.notes']?.blocked === 1);
    await flush();
    expect(handled).toEqual(['p:one@1', 'q:other@1']);
    expect(node.reactors.workers()).toEqual([
      {
        domain: 'bank',
        reactor: 'notes',
        key: 'bank.Probe.p',
        state: 'deadLettered',
        queued: 1,
        blockedBy: 1,
      },
    ]);
    const [deadLetter] = await node.reactors.deadLetters();
    expect(deadLetter).toMatchObject({
      id: 1,
      aggregateId: 'p',
      version: 2,
      attempts: 2,
      policy: 'wait',
    });

    broken = false;
    await node.reactors.replay(1);
    await until(() => handled.length === 5);
    expect(handled.slice(2)).toEqual(['p:bad@2', 'p:three@3', 'p:four@4']);
    expect(await node.reactors.deadLetters()).toEqual([]);
    expect(node.reactors.workers()).toEqual([]);
    await node.stop();
  });

  it("with 'skip', a replay runs only the dead-lettered event; discard drops a dead letter and unblocks", async () => {
    const handled: string[] = [];
    let broken = true;
    const skip = defineReactor({
      name: 'skip',
      aggregates: [Probe],
      retry: { attempts: 1 },
      on: {
        'Probe.Noted': (event) => {
          if (event.data.text === 'bad' && broken) throw new Error('no');
          handled.push(`${event.data.text}@${event.meta.version}`);
        },
      },
    });
    const wait = defineReactor({
      name: 'wait',
      aggregates: [Probe],
      retry: { attempts: 1 },
      deadLetters: 'wait',
      on: {
        'Probe.Noted': (event) =>
          void (
            event.data.text === 'bad' &&
            (() => {
              throw new Error('no');
            })()
          ),
      },
    });
    const { node } = start([skip, wait]);
    await node.start();
    await node.aggregate(Probe, 'p').noteAll({ texts: ['one', 'bad', 'three'] });
    await until(() => node.stats().deadLetters === 2);
    expect(handled).toEqual(['one@1', 'three@3']);
    const letters = await node.reactors.deadLetters({ reactor: 'skip' });
    broken = false;
    await node.reactors.replay(letters[0]!.id);
    expect(handled).toEqual(['one@1', 'three@3', 'bad@2']);

    const [held] = await node.reactors.deadLetters({ reactor: 'wait' });
    expect(node.stats().reactors['bank.wait']?.blocked).toBe(1);
    await expect(node.reactors.discard(held!.id)).resolves.toMatchObject({ id: held!.id });
    expect(node.stats().reactors['bank.wait']?.blocked).toBe(0);
    expect(await node.reactors.deadLetters()).toEqual([]);
    expect((await rejectionOf(node.reactors.discard(held!.id))).code).toBe('DEAD_LETTER_NOT_FOUND');
    await node.stop();
  });

  it('dead-letters an event that fails its schema on read without running the handler', async () => {
    const seen: StoredEvent[] = [];
    const reactor = defineReactor({
      name: 'audit',
      aggregates: [Account],
      on: { 'Account.Deposited': (event) => void seen.push(event) },
    });
    const { node, store } = start([reactor]);
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    const position = (
      await store.append({
        stream: { domain: 'bank', aggregate: 'Account', id: 'a' },
        expectedPosition: 1,
        dedupId: 'forged',
        events: [
          {
            type: 'Deposited',
            data: { amount: 'lots' },
            meta: {
              domain: 'bank',
              aggregate: 'Account',
              aggregateId: 'a',
              version: 2,
              timestamp: 0,
              commandId: 'forged',
              correlationId: 'forged',
              causationId: 'forged',
            },
          },
        ],
        commands: [{ id: 'forged' }],
      })
    ).position;
    await node.aggregate(Account, 'b').open({ owner: 'bob' });
    await node.aggregate(Account, 'b').deposit({ amount: 3 });
    await node.start();
    await until(() => seen.length === 1);
    const [deadLetter] = await node.reactors.deadLetters();
    expect(deadLetter).toMatchObject({
      subject: 'bank.Account.a',
      sequence: position,
      eventType: 'Deposited',
      version: 2,
      poison: true,
      attempts: 0,
      error: { code: 'CORRUPT_DATA' },
    });
    expect(deadLetter?.error.message).toContain(`sequence ${position} on "bank.Account.a"`);
    expect(deadLetter?.error.message).toContain('amount');
    expect(seen.map((e) => e.meta.aggregateId)).toEqual(['b']);
    await node.stop();
  });

  it('dead-letters a command to a domain the node cannot reach, saying how to reach it', async () => {
    const reactor = defineReactor({
      name: 'forward',
      aggregates: [Account],
      retry: { attempts: 1 },
      on: {
        'Account.Opened': async (_event, ctx) => {
          await ctx.send({ domain: 'ledger', aggregate: 'Entry', id: 'x', command: 'add' });
        },
      },
    });
    const { node } = start([reactor]);
    await node.start();
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await until(() => node.stats().deadLetters === 1);
    const [deadLetter] = await node.reactors.deadLetters();
    expect(deadLetter?.error.code).toBe('UNKNOWN_DOMAIN');
    expect(deadLetter?.error.message).toContain('reactors: { send }');
    await node.stop();
  });

  it('freezes its configuration once listening', async () => {
    const reactor = defineReactor({ name: 'late', aggregates: [Account], on: {} });
    const domain = defineDomain({ name: 'bank', aggregates: [Account], reactors: [reactor] });
    const host = new InProcessReactors({
      store: new InMemoryEventStore(),
      clock: new TestClock(),
      logger: silentLogger,
      send: () => Promise.reject(new Error('unused')),
    });
    await host.listen();
    expect(host.listening).toBe(true);
    let error: unknown;
    try {
      host.subscribe(domain, reactor);
    } catch (caught) {
      error = caught;
    }
    expect(isConfigError(error)).toBe(true);
    expect(String((error as Error).message)).toContain('Subscribe every reactor before listen()');
    await host.close(0);
    expect(host.listening).toBe(false);
  });

  it('close(timeoutMs) stops waiting for a handler that does not finish in time', async () => {
    const never = deferred();
    const started: string[] = [];
    const reactor = defineReactor({
      name: 'stuck',
      aggregates: [Account],
      on: {
        'Account.Opened': async (event) => {
          started.push(event.meta.aggregateId);
          await never.promise;
        },
      },
    });
    const { node, clock } = start([reactor]);
    await node.start();
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await until(() => started.length === 1);
    const stopping = node.stop(500);
    await flush();
    clock.advance(500);
    await stopping;
    expect(node.stats().reactors['bank.stuck']).toMatchObject({ inFlight: 1, handled: 0 });
    never.resolve();
  });
});
