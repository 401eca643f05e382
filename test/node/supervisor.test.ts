import { describe, expect, it } from 'vitest';
import {
  ConflictError,
  InfrastructureError,
  TestClock,
  createNode,
  isInfrastructureError,
  type AggregateView,
  type DomainNode,
  type NodeOptions,
} from '../../runtime/index.js';
import { Account, bank } from '../../domains/bank/index.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';
import { deferred, flush, rejectionOf, silentLogger, until } from '../fixtures/test-support.js';

function start(options: Partial<NodeOptions> = {}) {
  const clock = options.clock instanceof TestClock ? options.clock : new TestClock();
  const store = options.store instanceof FaultyEventStore ? options.store : new FaultyEventStore();
  const node = createNode({ domains: [bank], logger: silentLogger, ...options, clock, store });
  return { node, store, clock };
}

/** What must survive passivation: the machine's state and the version. */
const stateOf = ({ value, context, version, position }: AggregateView) => ({
  value,
  context,
  version,
  position,
});

async function busyAccount(node: DomainNode, id: string): Promise<void> {
  const ref = node.aggregate(Account, id);
  await ref.open({ owner: id, overdraftLimit: 20 });
  await ref.deposit({ amount: 50 });
  await ref.withdraw({ amount: 60 });
  await ref.freeze({ reason: 'audit' });
  await ref.deposit({ amount: 15 });
  await flush();
}

describe('supervisor', () => {
  it('spawns one actor per aggregate on its first command and keeps using it', async () => {
    const { node } = start();
    await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await node.aggregate(Account, 'acc-2').open({ owner: 'bob' });
    await node.aggregate(Account, 'acc-1').deposit({ amount: 1 });
    await node.aggregate(Account, 'acc-2').deposit({ amount: 1 });

    expect(node.stats()).toEqual({
      active: 2,
      spawned: 2,
      passivated: 0,
      restarts: 0,
      failed: 0,
      mailboxDepth: 0,
      conflicts: 0,
      deadLetters: 0,
      reactors: {
        'bank.transfers': expect.objectContaining({ handled: 0, retries: 0, deadLetters: 0 }),
      },
      projections: {
        'bank.balances': expect.objectContaining({ store: 'memory', applied: 0, lag: 0 }),
      },
    });
  });

  it('counts every conflict the store reports to its actors', async () => {
    const store = new FaultyEventStore();
    const { node: a } = start({ store });
    const { node: b } = start({ store });
    await a.aggregate(Account, 'acc-1').open({ owner: 'ann' });
    await b.view(Account, 'acc-1');
    // Each node appends on top of the version it saw; the loser of every race conflicts.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a : b).aggregate(Account, 'acc-1').deposit({ amount: 1 }),
      ),
    );
    expect(store.conflicts).toBeGreaterThan(0);
    expect(a.stats().conflicts + b.stats().conflicts).toBe(store.conflicts);
  });

  it('passivates the actors a predicate selects: idle ones at once, busy ones once idle', async () => {
    const { node, store } = start();
    await node.aggregate(Account, 'acc-idle').open({ owner: 'ann' });
    await node.aggregate(Account, 'acc-busy').open({ owner: 'bob' });
    await node.aggregate(Account, 'acc-kept').open({ owner: 'cid' });
    await flush();
    const held = deferred();
    store.beforeAppend = () => held.promise;
    const busy = node.aggregate(Account, 'acc-busy').deposit({ amount: 1 });
    await flush();

    const matched = node.passivateWhere((stream) => stream.id !== 'acc-kept');
    expect(matched).toBe(2);
    expect(node.stats()).toMatchObject({ active: 2, passivated: 1 });

    held.resolve();
    expect((await busy).version).toBe(2);
    await until(() => node.stats().active === 1);
    expect(node.stats()).toMatchObject({ active: 1, passivated: 2 });
    const { spawned } = node.stats();
    await node.aggregate(Account, 'acc-kept').deposit({ amount: 1 });
    expect(node.stats().spawned).toBe(spawned);
    expect((await node.aggregate(Account, 'acc-busy').deposit({ amount: 1 })).version).toBe(3);
    expect(node.stats().spawned).toBe(spawned + 1);
  });

  it('passivates actors idle for idleTimeoutMs and brings them back in the same state', async () => {
    const { node, clock } = start({ supervisor: { idleTimeoutMs: 10_000 } });
    await busyAccount(node, 'acc-idle');
    await busyAccount(node, 'acc-busy');
    const before = stateOf(await node.view(Account, 'acc-idle'));
    expect(before).toMatchObject({ value: 'frozen', version: 5, context: { balance: 5 } });

    clock.advance(6_000);
    await node.aggregate(Account, 'acc-busy').deposit({ amount: 1 });
    await flush();
    expect(node.stats()).toMatchObject({ active: 2, passivated: 0 });

    clock.advance(5_000);
    expect(node.stats()).toMatchObject({ active: 1, passivated: 1, spawned: 2 });

    const after = await node.view(Account, 'acc-idle');
    expect(node.stats().spawned).toBe(3);
    expect(stateOf(after)).toEqual(before);
    const next = await node.aggregate(Account, 'acc-idle').unfreeze({});
    expect(next.version).toBe(6);
  });

  it('passivates the least recently used actors beyond maxActive and brings them back the same', async () => {
    const { node } = start({ supervisor: { maxActive: 2 } });
    await busyAccount(node, 'acc-a');
    await busyAccount(node, 'acc-b');
    const a = stateOf(await node.view(Account, 'acc-a'));
    const b = stateOf(await node.view(Account, 'acc-b'));
    await node.aggregate(Account, 'acc-a').unfreeze({});
    await flush();

    await node.aggregate(Account, 'acc-c').open({ owner: 'cid' });
    await flush();
    expect(node.stats()).toMatchObject({ active: 2, spawned: 3, passivated: 1 });
    await node.aggregate(Account, 'acc-a').withdraw({ amount: 1 });
    expect(node.stats().spawned).toBe(3);

    expect(stateOf(await node.view(Account, 'acc-b'))).toEqual(b);
    expect(node.stats()).toMatchObject({ spawned: 4 });
    await flush();
    const aAfter = stateOf(await node.view(Account, 'acc-a'));
    expect(aAfter).toMatchObject({
      value: 'open',
      version: a.version + 2,
      context: { balance: 4 },
    });
  });

  it('does not passivate an actor in the middle of its replay', async () => {
    const { node: writer, store } = start();
    await busyAccount(writer, 'acc-a');
    const expected = stateOf(await writer.view(Account, 'acc-a'));

    const { node } = start({ store, supervisor: { maxActive: 1 } });
    const [view] = await Promise.all([
      node.view(Account, 'acc-a'),
      node.aggregate(Account, 'acc-b').open({ owner: 'bob' }),
    ]);
    expect(stateOf(view)).toEqual(expected);
    expect(node.stats().failed).toBe(0);
  });

  it('restarts a failed actor after a doubling backoff, leaving other aggregates alone', async () => {
    const { node, store, clock } = start({
      supervisor: { restartBackoffMs: 100, maxRestartBackoffMs: 250 },
    });
    await node.aggregate(Account, 'acc-bad').open({ owner: 'ann' });
    await node.aggregate(Account, 'acc-good').open({ owner: 'bob' });
    const { node: restarted } = start({
      store,
      clock,
      supervisor: { restartBackoffMs: 100, maxRestartBackoffMs: 250 },
    });
    const bad = restarted.aggregate(Account, 'acc-bad');
    const good = restarted.aggregate(Account, 'acc-good');
    store.beforeRead = (stream) => {
      if (stream.id === 'acc-bad') throw new Error('read timed out');
    };

    const replay = await rejectionOf(bad.deposit({ amount: 1 }));
    expect(replay).toBeInstanceOf(InfrastructureError);
    expect(replay.code).toBe('REPLAY_FAILED');
    expect(replay.retryable).toBe(true);
    expect(replay.message).toContain('read timed out');
    expect(restarted.stats()).toMatchObject({ failed: 1, restarts: 0 });

    const waiting = await rejectionOf(bad.deposit({ amount: 1 }));
    expect(isInfrastructureError(waiting)).toBe(true);
    expect(waiting.code).toBe('AGGREGATE_UNAVAILABLE');
    expect(waiting.retryable).toBe(true);
    expect(waiting.details).toEqual({ retryAfterMs: 100 });
    expect(waiting.message).toContain('restarts in 100 ms');
    expect((await rejectionOf(restarted.view(Account, 'acc-bad'))).code).toBe(
      'AGGREGATE_UNAVAILABLE',
    );
    expect((await good.deposit({ amount: 1 })).version).toBe(2);

    clock.advance(60);
    expect((await rejectionOf(bad.deposit({ amount: 1 }))).details).toEqual({ retryAfterMs: 40 });
    clock.advance(40);
    expect((await rejectionOf(bad.deposit({ amount: 1 }))).code).toBe('REPLAY_FAILED');
    expect(restarted.stats().restarts).toBe(1);
    expect((await rejectionOf(bad.deposit({ amount: 1 }))).details).toEqual({ retryAfterMs: 200 });

    clock.advance(200);
    expect((await rejectionOf(bad.deposit({ amount: 1 }))).code).toBe('REPLAY_FAILED');
    expect((await rejectionOf(bad.deposit({ amount: 1 }))).details).toEqual({ retryAfterMs: 250 });
    expect((await good.deposit({ amount: 1 })).version).toBe(3);

    store.heal();
    clock.advance(250);
    const healed = await bad.deposit({ amount: 1 });
    expect(healed).toMatchObject({ version: 2, response: { balance: 1 } });
    expect(restarted.stats()).toMatchObject({ restarts: 3, failed: 0 });
  });

  it('starts the backoff afresh once a restarted actor has replayed', async () => {
    const { node, store, clock } = start({ supervisor: { restartBackoffMs: 100 } });
    const ref = node.aggregate(Account, 'acc-1');
    store.beforeRead = () => {
      throw new Error('read timed out');
    };
    await rejectionOf(ref.open({ owner: 'ann' }));
    expect((await rejectionOf(ref.open({ owner: 'ann' }))).details).toEqual({ retryAfterMs: 100 });
    store.heal();
    clock.advance(100);
    await ref.open({ owner: 'ann' });
    await flush();

    store.beforeAppend = () => {
      store.beforeAppend = undefined;
      throw new ConflictError('CONCURRENCY_CONFLICT', 'someone else was faster');
    };
    store.beforeRead = () => {
      throw new Error('read timed out');
    };
    expect((await rejectionOf(ref.deposit({ amount: 1 }))).code).toBe('REPLAY_FAILED');
    const waiting = await rejectionOf(ref.deposit({ amount: 1 }));
    expect(waiting.details).toEqual({ retryAfterMs: 100 });
  });
});
