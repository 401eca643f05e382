import { describe, expect, it } from 'vitest';
import {
  ConflictError,
  DomainError,
  InMemoryEventStore,
  InfrastructureError,
  RejectionError,
  TestClock,
  createNode,
  isConflictError,
  isInfrastructureError,
  isRejectionError,
  type CommandResult,
  type NodeOptions,
  type StoredEvent,
  type StreamRef,
} from '../../runtime/index.js';
import { Account, bank } from '../../domains/bank/index.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';
import { Probe, probes } from '../fixtures/probe.js';
import {
  deferred,
  flush,
  readCommits,
  readEvents,
  rejectionOf,
  silentLogger,
} from '../fixtures/test-support.js';

const account = (id: string): StreamRef => ({ domain: 'bank', aggregate: 'Account', id });
const probe = (id: string): StreamRef => ({ domain: 'probes', aggregate: 'Probe', id });

function start(options: Partial<NodeOptions> = {}) {
  const clock = options.clock instanceof TestClock ? options.clock : new TestClock();
  const store = options.store instanceof FaultyEventStore ? options.store : new FaultyEventStore();
  const node = createNode({
    domains: [bank, probes],
    logger: silentLogger,
    ...options,
    clock,
    store,
  });
  return { node, store, clock };
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

/** Sends until the reply is not a retryable error (what a client does, with the same command id). */
async function acknowledged(send: () => Promise<CommandResult>): Promise<CommandResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      if (!isConflictError(error) || attempt >= 100) throw error;
    }
  }
}

describe('aggregate actor', () => {
  it('replays its stream before the first command', async () => {
    const { node: first, store } = start();
    const written = first.aggregate(Account, 'acc-1');
    await written.open({ owner: 'ann' });
    await written.deposit({ amount: 100 });
    await written.withdraw({ amount: 30 });
    await first.stop();

    const { node } = start({ store });
    const reply = await node.aggregate(Account, 'acc-1').withdraw({ amount: 70 });
    expect(reply.version).toBe(4);
    expect(reply.response).toEqual({ balance: 0 });
    const refused = await rejectionOf(node.aggregate(Account, 'acc-1').withdraw({ amount: 1 }));
    expect(refused.code).toBe('INSUFFICIENT_FUNDS');
    expect(refused.details).toMatchObject({ balance: 0 });
  });

  it('holds commands that arrive during its replay and runs them after it, in arrival order', async () => {
    const { node: first, store } = start();
    await first.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    const replay = deferred();
    store.beforeRead = () => replay.promise;

    const { node } = start({ store });
    const ref = node.aggregate(Account, 'acc-1');
    const settled: number[] = [];
    const replies = [10, 20, 30].map((amount, i) =>
      ref.deposit({ amount }).then((reply) => {
        settled.push(i);
        return reply;
      }),
    );
    await flush();
    expect(settled).toEqual([]);
    expect(node.stats().mailboxDepth).toBe(3);

    replay.resolve();
    const done = await Promise.all(replies);
    expect(settled).toEqual([0, 1, 2]);
    expect(done.map((r) => [r.version, r.response])).toEqual([
      [2, { balance: 10 }],
      [3, { balance: 30 }],
      [4, { balance: 60 }],
    ]);
  });

  describe('group commit', () => {
    it('stores 1,000 concurrent deposits gap-free and exact, replying in order, in fewer commits', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });

      const order: number[] = [];
      const replies = await Promise.all(
        range(1, 1000).map((amount, i) =>
          ref.deposit({ amount }).then((reply) => {
            order.push(i);
            return reply;
          }),
        ),
      );

      expect(order).toEqual(range(0, 1000));
      expect(replies.map((r) => r.version)).toEqual(range(2, 1000));
      let balance = 0;
      expect(replies.map((r) => r.response)).toEqual(
        range(1, 1000).map((amount) => ({ balance: (balance += amount) })),
      );
      expect(new Set(replies.map((r) => r.commandId)).size).toBe(1000);
      // Each reply carries its own command's event only, also the first of a batch.
      expect(replies.filter((r) => r.events.length !== 1)).toEqual([]);
      expect(replies.filter((r) => r.events[0]?.meta.commandId !== r.commandId)).toEqual([]);

      const commits = await readCommits(store, account('acc-1'));
      const events = commits.flatMap((commit) => commit.events);
      expect(events.map((e) => e.meta.version)).toEqual(range(1, 1001));
      expect(events.slice(1).map((e) => e.meta.commandId)).toEqual(replies.map((r) => r.commandId));
      expect(commits.length - 1).toBeLessThan(1000);
      expect(Math.max(...commits.map((c) => c.commands.length))).toBeGreaterThan(1);
      expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 500_500 });
    });

    it('decides each command of a batch on the state the earlier ones left, rejecting only the bad ones', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });

      const [deposit, overdraw, withdraw] = await Promise.allSettled([
        ref.deposit({ amount: 10 }),
        ref.withdraw({ amount: 20 }),
        ref.withdraw({ amount: 4 }),
      ]);
      expect(deposit).toMatchObject({ status: 'fulfilled', value: { version: 2 } });
      expect(overdraw).toMatchObject({
        status: 'rejected',
        reason: { code: 'INSUFFICIENT_FUNDS' },
      });
      expect(withdraw).toMatchObject({
        status: 'fulfilled',
        value: { version: 3, response: { balance: 6 } },
      });
      const events = await readEvents(store, account('acc-1'));
      expect(events.map((e) => [e.type, e.meta.version])).toEqual([
        ['Opened', 1],
        ['Deposited', 2],
        ['Withdrawn', 3],
      ]);
    });

    it('puts at most maxBatch commands in one commit', async () => {
      const { node, store } = start({ supervisor: { maxBatch: 7 } });
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      await Promise.all(range(1, 50).map((amount) => ref.deposit({ amount })));

      const commits = await readCommits(store, account('acc-1'));
      expect(commits.every((c) => c.events.length <= 7)).toBe(true);
      expect(commits.flatMap((c) => c.events)).toHaveLength(51);
    });
  });

  describe('refused commands', () => {
    const cases: {
      command: keyof typeof Probe.commands;
      code: string;
      kind: typeof RejectionError | typeof DomainError;
      says: string[];
    }[] = [
      { command: 'refuse', code: 'NOT_TODAY', kind: DomainError, says: ['The probe refuses.'] },
      {
        command: 'crash',
        code: 'DECIDE_FAILED',
        kind: RejectionError,
        says: ['"crash" threw', 'cannot read properties of undefined'],
      },
      { command: 'garbage', code: 'DECIDE_FAILED', kind: RejectionError, says: ['returned 42'] },
      {
        command: 'undeclared',
        code: 'INVALID_EVENT',
        kind: RejectionError,
        says: ['"Mystery"', 'declared: Noted, Exploded, Spawned, Ended'],
      },
      {
        command: 'inherited',
        code: 'INVALID_EVENT',
        kind: RejectionError,
        says: ['"constructor"'],
      },
      { command: 'badData', code: 'INVALID_EVENT', kind: RejectionError, says: ['text:'] },
      {
        command: 'noteThenEnd',
        code: 'INVALID_TRANSITION',
        kind: RejectionError,
        says: ['state "ended"', 'final state', '"Noted"'],
      },
      { command: 'explode', code: 'EVOLVE_FAILED', kind: RejectionError, says: ['kaboom'] },
      { command: 'spawn', code: 'EVOLVE_FAILED', kind: RejectionError, says: ['spawned an actor'] },
    ];

    it.each(cases)(
      'refuses $command with $code, stores nothing, keeps its state and keeps serving',
      async ({ command, code, kind, says }) => {
        const { node, store } = start();
        await node.aggregate(Probe, 'p-1').note({ text: 'first' });
        const stored = store.stored.length;
        const before = await node.view(Probe, 'p-1');

        const error = await rejectionOf(
          node.execute({ aggregate: 'Probe', id: 'p-1', command, input: {} }),
        );
        expect(error).toBeInstanceOf(kind);
        expect(isRejectionError(error)).toBe(true);
        expect(error.retryable).toBe(false);
        expect(error.code).toBe(code);
        for (const text of says) expect(error.message).toContain(text);

        expect(store.stored.length).toBe(stored);
        expect(await readEvents(store, probe('p-1'))).toHaveLength(1);
        const after = await node.view(Probe, 'p-1');
        expect([after.value, after.context, after.version]).toEqual([
          before.value,
          before.context,
          before.version,
        ]);
        const next = await node.aggregate(Probe, 'p-1').note({ text: 'second' });
        expect(next.version).toBe(2);
        expect((await node.view(Probe, 'p-1')).context).toMatchObject({
          notes: ['first', 'second'],
        });
      },
    );

    it('keeps the cause of a decide that threw, and the zod issues of bad event data', async () => {
      const { node } = start();
      const crash = await rejectionOf(node.aggregate(Probe, 'p-1').crash({}));
      expect(crash.cause).toBeInstanceOf(TypeError);
      const bad = await rejectionOf(node.aggregate(Probe, 'p-1').badData({}));
      expect(bad.details).toMatchObject({ issues: [{ path: ['text'] }] });
    });

    it('answers a command that decides no events without storing anything', async () => {
      const { node, store } = start();
      await node.aggregate(Probe, 'p-1').note({ text: 'first' });
      const reply = await node.aggregate(Probe, 'p-1').nothing({});
      expect(reply).toMatchObject({ version: 1, events: [], response: 'nothing to do' });
      expect(store.stored).toHaveLength(1);
    });

    it('checks expectedVersion against the version the command is decided on', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' }, { expectedVersion: 0 });
      await ref.deposit({ amount: 5 }, { expectedVersion: 1 });

      const error = await rejectionOf(ref.deposit({ amount: 5 }, { expectedVersion: 1 }));
      expect(error).toBeInstanceOf(RejectionError);
      expect(error.code).toBe('WRONG_EXPECTED_VERSION');
      expect(error.details).toEqual({ expected: 1, actual: 2 });
      expect(error.message).toContain('resend with expectedVersion 2');
      expect(store.stored).toHaveLength(2);

      const [one, two] = await Promise.allSettled([
        ref.deposit({ amount: 1 }, { expectedVersion: 2 }),
        ref.deposit({ amount: 1 }, { expectedVersion: 2 }),
      ]);
      expect(one).toMatchObject({ status: 'fulfilled', value: { version: 3 } });
      expect(two).toMatchObject({
        status: 'rejected',
        reason: { code: 'WRONG_EXPECTED_VERSION', details: { expected: 2, actual: 3 } },
      });
    });
  });

  describe('idempotent commands', () => {
    const commandIdsIn = (events: StoredEvent[], id: string) =>
      events.filter((e) => e.meta.commandId === id).length;

    it('answers a command id it has already stored with the first result, storing it once', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const first = await ref.deposit({ amount: 5 }, { commandId: 'dep-1' });
      const again = await ref.deposit({ amount: 5 }, { commandId: 'dep-1' });

      expect(first.duplicate).toBe(false);
      expect(again).toEqual({ ...first, duplicate: true });
      expect(commandIdsIn(await readEvents(store, account('acc-1')), 'dep-1')).toBe(1);
      expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 5 });
    });

    it('stores a command id once when it arrives twice in the same batch', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const [first, again] = await Promise.all([
        ref.deposit({ amount: 5 }, { commandId: 'dep-1' }),
        ref.deposit({ amount: 5 }, { commandId: 'dep-1' }),
      ]);

      expect(again).toEqual({ ...first, duplicate: true });
      expect(commandIdsIn(await readEvents(store, account('acc-1')), 'dep-1')).toBe(1);
    });

    it('still knows the command id after passivation, from the commits it replays', async () => {
      const clock = new TestClock();
      const { node, store } = start({
        clock,
        store: new FaultyEventStore(new InMemoryEventStore({ clock, duplicateWindowMs: 1_000 })),
        supervisor: { idleTimeoutMs: 1_000 },
      });
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const first = await ref.deposit({ amount: 5 }, { commandId: 'dep-1' });
      await flush();
      clock.advance(5_000);
      expect(node.stats()).toMatchObject({ active: 0, passivated: 1 });

      const again = await ref.deposit({ amount: 5 }, { commandId: 'dep-1' });
      expect(node.stats().spawned).toBe(2);
      expect(again).toEqual({ ...first, duplicate: true });
      expect(again.response).toEqual({ balance: 5 });
      expect(commandIdsIn(await readEvents(store, account('acc-1')), 'dep-1')).toBe(1);
    });

    it('answers a command id it no longer remembers from the store deduplication', async () => {
      const { node, store } = start({ supervisor: { recentCommands: 1 } });
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const first = await ref.deposit({ amount: 5 }, { commandId: 'dep-1' });
      await ref.deposit({ amount: 7 }, { commandId: 'dep-2' });

      const again = await ref.deposit({ amount: 5 }, { commandId: 'dep-1' });
      expect(again).toMatchObject({ commandId: 'dep-1', version: first.version, duplicate: true });
      expect(commandIdsIn(await readEvents(store, account('acc-1')), 'dep-1')).toBe(1);
      expect((await node.view(Account, 'acc-1')).context).toMatchObject({ balance: 12 });
    });

    it('treats the same command id on two aggregates as two commands', async () => {
      const { node } = start();
      const a = await node.aggregate(Account, 'acc-a').open({ owner: 'a' }, { commandId: 'open' });
      const b = await node.aggregate(Account, 'acc-b').open({ owner: 'b' }, { commandId: 'open' });

      expect([a.duplicate, b.duplicate]).toEqual([false, false]);
      expect((await node.view(Account, 'acc-b')).context).toMatchObject({ owner: 'b' });
    });

    it('lets a refused command id be sent again once the aggregate allows it', async () => {
      const { node } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const refused = await rejectionOf(ref.withdraw({ amount: 5 }, { commandId: 'wd-1' }));
      expect(refused.code).toBe('INSUFFICIENT_FUNDS');
      await ref.deposit({ amount: 5 });

      const reply = await ref.withdraw({ amount: 5 }, { commandId: 'wd-1' });
      expect(reply).toMatchObject({ duplicate: false, version: 3, response: { balance: 0 } });
    });
  });

  describe('event metadata', () => {
    it('stamps each event with aggregate, version, clock time, command, correlation, causation and actor', async () => {
      const at = Date.UTC(2026, 2, 3, 4, 5, 6);
      let generated = 0;
      const { node, store, clock } = start({
        clock: new TestClock(at),
        newId: () => `gen-${++generated}`,
      });
      const ref = node.aggregate(Account, 'acc-1');
      const opened = await ref.open({ owner: 'ann' });
      clock.advance(1_500);
      const deposited = await ref.deposit(
        { amount: 5 },
        { commandId: 'dep-1', correlationId: 'corr-9', causationId: 'cause-3', actor: 'teller-7' },
      );

      expect(opened.commandId).toBe('gen-1');
      expect(opened.events[0]?.meta).toEqual({
        domain: 'bank',
        aggregate: 'Account',
        aggregateId: 'acc-1',
        version: 1,
        timestamp: at,
        commandId: 'gen-1',
        correlationId: 'gen-1',
        causationId: 'gen-1',
      });
      expect(deposited.events[0]?.meta).toEqual({
        domain: 'bank',
        aggregate: 'Account',
        aggregateId: 'acc-1',
        version: 2,
        timestamp: at + 1_500,
        commandId: 'dep-1',
        correlationId: 'corr-9',
        causationId: 'cause-3',
        actor: 'teller-7',
      });
      expect(await readEvents(store, account('acc-1'))).toEqual([
        ...opened.events,
        ...deposited.events,
      ]);
    });

    it('gives the events of one command consecutive versions and the same command and time', async () => {
      const { node, clock } = start();
      await node.aggregate(Probe, 'p-1').note({ text: 'zero' });
      const reply = await node.aggregate(Probe, 'p-1').noteAll({ texts: ['a', 'b', 'c'] });

      expect(reply.version).toBe(4);
      expect(reply.events.map((e) => [e.meta.version, e.meta.commandId, e.meta.timestamp])).toEqual(
        [2, 3, 4].map((version) => [version, reply.commandId, clock.now()]),
      );
    });

    it('shows decide the aggregate id, the version before the command, its metadata and the clock', async () => {
      const { node, clock } = start();
      await node.aggregate(Probe, 'p-7').note({ text: 'zero' });
      const reply = await node
        .aggregate(Probe, 'p-7')
        .context({}, { commandId: 'ctx-1', correlationId: 'corr-1', actor: 'me' });

      expect(reply.response).toEqual({
        aggregateId: 'p-7',
        version: 1,
        command: {
          id: 'ctx-1',
          name: 'context',
          correlationId: 'corr-1',
          causationId: 'ctx-1',
          actor: 'me',
        },
        now: clock.now(),
        notes: 1,
      });
    });
  });

  describe('concurrent writers', () => {
    it('loses no update when two nodes write the same aggregates at once', async () => {
      const store = new FaultyEventStore();
      const nodes = [start({ store }).node, start({ store }).node] as const;
      const ids = ['acc-a', 'acc-b', 'acc-c'];
      for (const id of ids) await nodes[0].aggregate(Account, id).open({ owner: id });

      const sent = range(0, 300).map((i) => ({
        node: i % 2 === 0 ? nodes[0] : nodes[1],
        id: ids[i % 3] ?? '',
        commandId: `dep-${i}`,
        amount: i + 1,
      }));
      const replies = await Promise.all(
        sent.map(({ node, id, commandId, amount }) =>
          acknowledged(() => node.aggregate(Account, id).deposit({ amount }, { commandId })),
        ),
      );

      expect(store.conflicts).toBeGreaterThan(0);
      const { node: reader } = start({ store });
      for (const id of ids) {
        const mine = sent.filter((s) => s.id === id);
        const events = await readEvents(store, account(id));
        expect(events.map((e) => e.meta.version)).toEqual(range(1, mine.length + 1));
        expect(
          events
            .slice(1)
            .map((e) => e.meta.commandId)
            .sort(),
        ).toEqual(mine.map((s) => s.commandId).sort());
        const versions = replies.filter((_, i) => sent[i]?.id === id).map((r) => r.version);
        expect(versions.sort((a, b) => a - b)).toEqual(range(2, mine.length));
        const total = mine.reduce((sum, s) => sum + s.amount, 0);
        expect((await reader.view(Account, id)).context).toMatchObject({ balance: total });
      }
    });

    it('answers a command another node already stored as a duplicate', async () => {
      const store = new FaultyEventStore();
      const { node: a } = start({ store });
      const { node: b } = start({ store });
      await b.aggregate(Account, 'acc-1').open({ owner: 'ann' });
      await a.aggregate(Account, 'acc-1').deposit({ amount: 5 }, { commandId: 'dep-1' });

      const again = await b
        .aggregate(Account, 'acc-1')
        .deposit({ amount: 5 }, { commandId: 'dep-1' });
      expect(again).toMatchObject({ duplicate: true, version: 2 });
      expect(store.stored).toHaveLength(2);
    });

    it('gives up with CONCURRENCY_CONFLICT after maxConflictRetries when it always loses', async () => {
      const { node, store } = start({ supervisor: { maxConflictRetries: 3 } });
      await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
      const calls = store.appendCalls;
      store.beforeAppend = () => {
        throw new ConflictError('CONCURRENCY_CONFLICT', 'someone else was faster');
      };

      const error = await rejectionOf(node.aggregate(Account, 'acc-1').deposit({ amount: 5 }));
      expect(error).toBeInstanceOf(ConflictError);
      expect(isConflictError(error)).toBe(true);
      expect(error.retryable).toBe(true);
      expect(error.code).toBe('CONCURRENCY_CONFLICT');
      expect(error.message).toContain('gave up after 3 retries');
      expect(store.appendCalls - calls).toBe(4);
      expect(store.stored).toHaveLength(1);

      store.heal();
      expect((await node.aggregate(Account, 'acc-1').deposit({ amount: 5 })).version).toBe(2);
    });
  });

  describe('store failures', () => {
    it('rejects with a retryable STORE_FAILED when the append fails, then keeps serving', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const disk = new Error('disk on fire');
      store.beforeAppend = () => {
        store.heal();
        throw disk;
      };

      const error = await rejectionOf(ref.deposit({ amount: 5 }));
      expect(error).toBeInstanceOf(InfrastructureError);
      expect(isInfrastructureError(error)).toBe(true);
      expect(error.retryable).toBe(true);
      expect(error.code).toBe('STORE_FAILED');
      expect(error.message).toContain('disk on fire');
      expect(error.cause).toBe(disk);
      expect(store.stored).toHaveLength(1);

      const next = await ref.deposit({ amount: 7 });
      expect(next).toMatchObject({ version: 2, response: { balance: 7 } });
    });

    it('catches up when the commit was stored but its acknowledgement lost, and answers the retry as a duplicate', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      store.afterAppend = () => {
        store.heal();
        throw new Error('connection reset');
      };

      const error = await rejectionOf(ref.deposit({ amount: 5 }, { commandId: 'dep-1' }));
      expect(error.code).toBe('STORE_FAILED');
      expect((await node.view(Account, 'acc-1')).version).toBe(2);

      const retry = await ref.deposit({ amount: 5 }, { commandId: 'dep-1' });
      expect(retry).toMatchObject({ duplicate: true, version: 2, response: { balance: 5 } });
      expect((await ref.deposit({ amount: 1 })).version).toBe(3);
      expect(store.stored).toHaveLength(2 + 1);
    });

    it('decides commands queued behind a failed commit again on the stored state', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const hold = deferred();
      store.beforeAppend = async () => {
        store.heal();
        await hold.promise;
        throw new Error('timeout');
      };

      const first = ref.deposit({ amount: 100 });
      await flush();
      const queued = [ref.deposit({ amount: 1 }), ref.deposit({ amount: 2 })];
      hold.resolve();

      expect((await rejectionOf(first)).code).toBe('STORE_FAILED');
      const replies = await Promise.all(queued);
      expect(replies.map((r) => [r.version, r.response])).toEqual([
        [2, { balance: 1 }],
        [3, { balance: 3 }],
      ]);
    });

    describe('corrupt data', () => {
      const meta = (id: string, version: number) => ({
        domain: 'bank',
        aggregate: 'Account',
        aggregateId: id,
        version,
        timestamp: 0,
        commandId: `c-${version}`,
        correlationId: `c-${version}`,
        causationId: `c-${version}`,
      });
      const cases: { what: string; events: (id: string) => StoredEvent[]; says: string }[] = [
        {
          what: 'an event failing its schema',
          events: (id) => [{ type: 'Deposited', data: { amount: 'lots' }, meta: meta(id, 2) }],
          says: 'amount',
        },
        {
          what: 'a version gap',
          events: (id) => [{ type: 'Deposited', data: { amount: 5 }, meta: meta(id, 3) }],
          says: 'expected version 2, found 3',
        },
        {
          what: 'an unknown event type',
          events: (id) => [{ type: 'Robbed', data: {}, meta: meta(id, 2) }],
          says: '"Robbed"',
        },
        {
          what: 'an event type named like an Object property',
          events: (id) => [{ type: 'constructor', data: {}, meta: meta(id, 2) }],
          says: '"constructor"',
        },
        {
          what: 'an event the machine refuses',
          events: (id) => [
            { type: 'Opened', data: { owner: 'again', overdraftLimit: 0 }, meta: meta(id, 2) },
          ],
          says: '"Opened" is not accepted',
        },
      ];

      it.each(cases)(
        'fails replay with a typed REPLAY_FAILED naming the position, for $what',
        async ({ events, says }) => {
          const { node, store } = start();
          await node.aggregate(Account, 'acc-bad').open({ owner: 'ann' });
          await node.aggregate(Account, 'acc-good').open({ owner: 'bob' });
          const [opened] = await readCommits(store, account('acc-bad'));
          const { position } = await store.inner.append({
            stream: account('acc-bad'),
            expectedPosition: opened?.position ?? 0,
            dedupId: 'corrupt',
            events: events('acc-bad'),
            commands: [{ id: 'corrupt' }],
          });

          const { node: fresh } = start({ store });
          const error = await rejectionOf(
            fresh.aggregate(Account, 'acc-bad').deposit({ amount: 1 }),
          );
          expect(error).toBeInstanceOf(InfrastructureError);
          expect(error.code).toBe('REPLAY_FAILED');
          expect(error.details).toEqual({ position });
          expect(error.message).toContain(`position ${position}`);
          expect(error.message).toContain(says);
          expect(fresh.stats().failed).toBe(1);

          const other = await fresh.aggregate(Account, 'acc-good').deposit({ amount: 1 });
          expect(other.version).toBe(2);
        },
      );
    });
  });
});
