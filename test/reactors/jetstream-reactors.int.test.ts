import { jetstream, jetstreamManager, type ConsumerInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { Aircraft } from '../../domains/flight/index.js';
import { encodeEnvelope } from '../../runtime/event-store/commit-envelope.js';
import {
  DomainError,
  JetStreamEventStore,
  MsgpackCodec,
  createNode,
  defineDomain,
  defineReactor,
  type CommandRequest,
  type DomainNode,
  type NodeOptions,
  type ReactorDefinition,
} from '../../runtime/index.js';
import { connectShared, uniqueName } from '../helpers/nats.js';
import { Probe } from '../fixtures/probe.js';
import { deferred, readCommits, rejectionOf, silentLogger } from '../fixtures/test-support.js';

const acc = (id: string) => ({ domain: 'bank', aggregate: 'Account', id });

/** A node hosting bank with these reactors, on the shared server under `prefix`. */
async function reactorNode(
  nc: NatsConnection,
  prefix: string,
  reactors: ReactorDefinition<any>[],
  options: Partial<NodeOptions> = {},
): Promise<{ node: DomainNode; store: JetStreamEventStore }> {
  const store = await JetStreamEventStore.open({ connection: nc, prefix });
  const node = createNode({
    domains: [defineDomain({ name: 'bank', aggregates: [Account], reactors })],
    store,
    logger: silentLogger,
    ...options,
    reactors: { ackWaitMs: 1_000, ...options.reactors },
  });
  await node.start();
  return { node, store };
}

/** A node hosting bank without reactors: writes events for the reactors to read. */
async function writer(nc: NatsConnection, prefix: string): Promise<DomainNode> {
  const store = await JetStreamEventStore.open({ connection: nc, prefix });
  const node = createNode({ domains: [bank], store, logger: silentLogger });
  await node.start();
  return node;
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('reactors on JetStream', () => {
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    await nc.close();
  });

  async function consumerInfo(prefix: string, reactor: string): Promise<ConsumerInfo> {
    const jsm = await jetstreamManager(nc);
    return jsm.consumers.info(`${prefix}_bank`, `${prefix}_bank_${reactor}`);
  }

  it('handles each stored event on a durable consumer filtered to its aggregate and acknowledges it', async () => {
    const prefix = uniqueName('rx');
    const seen: string[] = [];
    const ledger = defineReactor({
      name: 'ledger',
      aggregates: [Account],
      on: {
        'Account.Deposited': (event) => {
          seen.push(`${event.meta.aggregateId}+${event.data.amount}@${event.meta.version}`);
        },
      },
    });
    const { node } = await reactorNode(nc, prefix, [ledger]);
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await node.aggregate(Account, 'a').deposit({ amount: 5 });
    await node.aggregate(Account, 'b').open({ owner: 'bob' });
    await node.aggregate(Account, 'b').deposit({ amount: 7 });
    await waitFor(() => seen.length === 2);
    expect(seen.sort()).toEqual(['a+5@2', 'b+7@2']);

    const info = await consumerInfo(prefix, 'ledger');
    expect(info.config).toMatchObject({
      durable_name: `${prefix}_bank_ledger`,
      filter_subject: `${prefix}.evt.bank.Account.*`,
      ack_policy: 'explicit',
    });
    await waitFor(async () => {
      const now = await consumerInfo(prefix, 'ledger');
      return now.num_ack_pending === 0 && now.num_pending === 0 && now.ack_floor.stream_seq === 4;
    });
    expect(node.stats().reactors['bank.ledger']).toMatchObject({
      handled: 2,
      inFlight: 0,
      lag: 0,
      deadLetters: 0,
    });
    await node.stop();
  });

  it('keeps order per aggregate and runs aggregates in parallel while injected failures are retried', async () => {
    const prefix = uniqueName('rx');
    const ids = Array.from({ length: 8 }, (_, i) => `o${i}`);
    const source = await writer(nc, prefix);
    for (const id of ids) await source.aggregate(Account, id).open({ owner: id });
    // Interleave the aggregates in the stream: deposit 1 on every account, then 2, …
    for (let amount = 1; amount <= 10; amount++) {
      await Promise.all(ids.map((id) => source.aggregate(Account, id).deposit({ amount })));
    }
    await source.stop();

    const order = new Map<string, number[]>(ids.map((id) => [id, []]));
    const global: string[] = [];
    const running = new Set<string>();
    const tries = new Map<string, number>();
    let overlap = 0;
    let parallel = 0;
    const ordered = defineReactor({
      name: 'ordered',
      aggregates: [Account],
      concurrency: 4,
      retry: { attempts: 5, backoffMs: 5 },
      on: {
        'Account.Deposited': async (event) => {
          const id = event.meta.aggregateId;
          if (running.has(id)) overlap += 1;
          running.add(id);
          parallel = Math.max(parallel, running.size);
          try {
            await sleep(2);
            const key = `${id}@${event.meta.version}`;
            const attempt = (tries.get(key) ?? 0) + 1;
            tries.set(key, attempt);
            // Every third amount fails twice before it goes through.
            if (event.data.amount % 3 === 0 && attempt < 3) throw new Error(`injected ${key}`);
            order.get(id)!.push(event.meta.version);
            global.push(id);
          } finally {
            running.delete(id);
          }
        },
      },
    });
    const { node } = await reactorNode(nc, prefix, [ordered]);
    await waitFor(() => global.length === ids.length * 10, 10_000);

    for (const id of ids) {
      expect(order.get(id), id).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    }
    expect(overlap).toBe(0);
    expect(parallel).toBeGreaterThan(1);
    expect(parallel).toBeLessThanOrEqual(4);
    // Aggregates interleave: the handling order is not one aggregate after another.
    const switches = global.filter((id, i) => i > 0 && global[i - 1] !== id).length;
    expect(switches).toBeGreaterThan(ids.length);
    expect(node.stats().reactors['bank.ordered']).toMatchObject({
      handled: 80,
      retries: ids.length * 3 * 2,
      deadLetters: 0,
    });
    await node.stop();
  });

  it('dead-letters an event after its last try, goes on with the aggregate (skip), and replays it once fixed', async () => {
    const prefix = uniqueName('rx');
    let fixed = false;
    const handled: string[] = [];
    const fragile = defineReactor({
      name: 'fragile',
      aggregates: [Account],
      retry: { attempts: 3, backoffMs: 5 },
      deadLetters: 'skip',
      on: {
        'Account.Deposited': (event) => {
          if (event.data.amount === 13 && !fixed) {
            throw new DomainError('UNLUCKY', 'thirteen is unlucky');
          }
          handled.push(`${event.meta.aggregateId}+${event.data.amount}@${event.meta.version}`);
        },
      },
    });
    const { node, store } = await reactorNode(nc, prefix, [fragile]);
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await node.aggregate(Account, 'a').deposit({ amount: 13 });
    await node.aggregate(Account, 'a').deposit({ amount: 1 });
    await node.aggregate(Account, 'b').open({ owner: 'bob' });
    await node.aggregate(Account, 'b').deposit({ amount: 2 });
    await waitFor(() => handled.length === 2);
    expect(handled.sort()).toEqual(['a+1@3', 'b+2@2']);

    const commit = (await readCommits(store, acc('a'))).find(
      (c) => c.events[0]?.meta.version === 2,
    );
    const [deadLetter, ...others] = await node.reactors.deadLetters();
    expect(others).toEqual([]);
    expect(deadLetter).toMatchObject({
      domain: 'bank',
      reactor: 'fragile',
      subject: `${prefix}.evt.bank.Account.a`,
      sequence: commit?.position,
      aggregate: 'Account',
      aggregateId: 'a',
      eventType: 'Deposited',
      version: 2,
      error: { code: 'UNLUCKY', message: 'thirteen is unlucky' },
      attempts: 3,
      poison: false,
      policy: 'skip',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const dlq = await (
      await jetstreamManager(nc)
    ).streams.info(`${prefix}_deadletters`, {
      subjects_filter: '>',
    });
    expect(dlq.state.subjects).toEqual({ [`${prefix}.dlq.bank.fragile`]: 1 });
    expect(dlq.config).toMatchObject({ storage: 'file', num_replicas: 1 });
    expect(node.stats()).toMatchObject({
      deadLetters: 1,
      reactors: { 'bank.fragile': { deadLetters: 1 } },
    });

    const failed = await rejectionOf(node.reactors.replay(deadLetter!.id));
    expect(failed.code).toBe('REACTOR_HANDLER_FAILED');
    expect(failed.message).toContain('thirteen is unlucky (UNLUCKY)');
    expect(failed.message).toContain('The dead letter stays');
    expect(await node.reactors.deadLetters()).toHaveLength(1);

    fixed = true;
    await expect(node.reactors.replay(deadLetter!.id)).resolves.toMatchObject({
      id: deadLetter!.id,
    });
    expect(handled).toContain('a+13@2');
    expect(await node.reactors.deadLetters()).toEqual([]);
    const again = await rejectionOf(node.reactors.replay(deadLetter!.id));
    expect(again.code).toBe('DEAD_LETTER_NOT_FOUND');
    await node.stop();
  });

  it("holds an aggregate's later events behind its dead letter (wait), across a restart, until the replay", async () => {
    const prefix = uniqueName('rx');
    let broken = true;
    const handled: string[] = [];
    const strict = defineReactor({
      name: 'strict',
      aggregates: [Account],
      retry: { attempts: 2, backoffMs: 5 },
      deadLetters: 'wait',
      on: {
        'Account.Deposited': (event) => {
          if (event.data.amount === 13 && broken) throw new Error('ledger offline');
          handled.push(`${event.meta.aggregateId}+${event.data.amount}@${event.meta.version}`);
        },
      },
    });
    const first = await reactorNode(nc, prefix, [strict]);
    const a = first.node.aggregate(Account, 'a');
    await a.open({ owner: 'ann' });
    await first.node.aggregate(Account, 'b').open({ owner: 'bob' });
    await a.deposit({ amount: 13 });
    await a.deposit({ amount: 1 });
    await a.deposit({ amount: 2 });
    await first.node.aggregate(Account, 'b').deposit({ amount: 5 });
    await waitFor(() => handled.includes('b+5@2'));
    await waitFor(async () => (await first.node.reactors.deadLetters()).length === 1);
    await sleep(100);
    expect(handled).toEqual(['b+5@2']);
    expect(first.node.stats().reactors['bank.strict']).toMatchObject({
      blocked: 1,
      unacknowledged: 2,
      workers: { deadLettered: 1 },
    });
    expect(first.node.reactors.workers()).toContainEqual(
      expect.objectContaining({
        key: `${prefix}.evt.bank.Account.a`,
        state: 'deadLettered',
        queued: 2,
      }),
    );
    await first.node.stop(1_000);

    const second = await reactorNode(nc, prefix, [strict]);
    await second.node.aggregate(Account, 'a').deposit({ amount: 3 });
    await second.node.aggregate(Account, 'b').deposit({ amount: 6 });
    await waitFor(() => handled.includes('b+6@3'));
    await sleep(100);
    expect(handled).toEqual(['b+5@2', 'b+6@3']);
    expect(second.node.stats().reactors['bank.strict']).toMatchObject({ blocked: 1 });

    const [deadLetter] = await second.node.reactors.deadLetters({ reactor: 'strict' });
    expect(deadLetter).toMatchObject({ aggregateId: 'a', version: 2, policy: 'wait', attempts: 2 });
    expect((await rejectionOf(second.node.reactors.replay(deadLetter!.id))).code).toBe(
      'REACTOR_HANDLER_FAILED',
    );
    broken = false;
    await second.node.reactors.replay(deadLetter!.id);
    await waitFor(() => handled.length === 6);
    expect(handled.slice(2)).toEqual(['a+13@2', 'a+1@3', 'a+2@4', 'a+3@5']);
    expect(second.node.stats().reactors['bank.strict']).toMatchObject({ blocked: 0 });
    await waitFor(async () => (await consumerInfo(prefix, 'strict')).num_ack_pending === 0);
    await second.node.stop();
  });

  it('dead-letters a poison commit at once with an error naming subject and sequence, and keeps going', async () => {
    const prefix = uniqueName('rx');
    const handled: string[] = [];
    const audit = defineReactor({
      name: 'audit',
      aggregates: [Account],
      retry: { attempts: 3, backoffMs: 5 },
      on: {
        'Account.Opened': (event) => void handled.push(`${event.meta.aggregateId} opened`),
        'Account.Deposited': (event) =>
          void handled.push(`${event.meta.aggregateId}+${event.data.amount}`),
      },
    });
    const { node, store } = await reactorNode(nc, prefix, [audit]);
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    const js = jetstream(nc);
    const garbage = await js.publish(store.subject(acc('junk')), new TextEncoder().encode('{oops'));
    // A well-formed commit whose event fails its schema (a negative amount).
    const invalid = await js.publish(
      store.subject(acc('neg')),
      encodeEnvelope(
        new MsgpackCodec(),
        0,
        [
          {
            type: 'Deposited',
            data: { amount: -5 },
            meta: {
              domain: 'bank',
              aggregate: 'Account',
              aggregateId: 'neg',
              version: 1,
              timestamp: 0,
              commandId: 'forged',
              correlationId: 'forged',
              causationId: 'forged',
            },
          },
        ],
        [{ id: 'forged' }],
      ),
    );
    await node.aggregate(Account, 'b').open({ owner: 'bob' });
    await node.aggregate(Account, 'b').deposit({ amount: 4 });
    await waitFor(() => handled.includes('b+4'));
    await waitFor(async () => (await node.reactors.deadLetters()).length === 2);
    expect(handled).toEqual(['a opened', 'b opened', 'b+4']);

    const [undecodable, unreadable] = await node.reactors.deadLetters();
    expect(undecodable).toMatchObject({
      subject: `${prefix}.evt.bank.Account.junk`,
      sequence: garbage.seq,
      aggregateId: 'junk',
      poison: true,
      attempts: 0,
      error: { code: 'CORRUPT_DATA' },
    });
    expect(undecodable?.error.message).toContain(`sequence ${garbage.seq}`);
    expect(undecodable?.error.message).toContain(`"${prefix}.evt.bank.Account.junk"`);
    expect(undecodable?.eventType).toBeUndefined();
    expect(unreadable).toMatchObject({
      subject: `${prefix}.evt.bank.Account.neg`,
      sequence: invalid.seq,
      eventType: 'Deposited',
      version: 1,
      poison: true,
      error: { code: 'CORRUPT_DATA' },
    });
    expect(unreadable?.error.message).toContain('amount');
    expect(unreadable?.error.message).toContain(`sequence ${invalid.seq}`);
    // Replaying poison cannot help until the data or the definition changes; discarding can.
    expect((await rejectionOf(node.reactors.replay(undecodable!.id))).code).toBe('CORRUPT_DATA');
    await node.reactors.discard(undecodable!.id);
    await node.reactors.discard(unreadable!.id);
    expect(await node.reactors.deadLetters()).toEqual([]);
    await waitFor(async () => (await consumerInfo(prefix, 'audit')).num_ack_pending === 0);
    await node.stop();
  });

  it('reads the whole domain through one filter when it handles several aggregates, acknowledging the others at once', async () => {
    const prefix = uniqueName('rx');
    const seen: string[] = [];
    const both = defineReactor({
      name: 'both',
      aggregates: [Account, Aircraft],
      on: {
        'Account.Opened': (event) => void seen.push(`opened ${event.meta.aggregateId}`),
        'Aircraft.TakenOff': (event) => void seen.push(`took off ${event.meta.aggregateId}`),
      },
    });
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const node = createNode({
      domains: [
        defineDomain({ name: 'mixed', aggregates: [Account, Aircraft, Probe], reactors: [both] }),
      ],
      store,
      logger: silentLogger,
    });
    await node.start();
    await node.aggregate(Probe, 'p').note({ text: 'not for the reactor' });
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await node.aggregate(Aircraft, 'f').takeOff({});
    await node.aggregate(Probe, 'p').note({ text: 'nor this' });
    await waitFor(() => seen.length === 2);
    expect(seen).toEqual(['opened a', 'took off f']);
    const jsm = await jetstreamManager(nc);
    await waitFor(async () => {
      const info = await jsm.consumers.info(`${prefix}_mixed`, `${prefix}_mixed_both`);
      return info.ack_floor.stream_seq === 4;
    });
    const info = await jsm.consumers.info(`${prefix}_mixed`, `${prefix}_mixed_both`);
    expect(info.config.filter_subject).toBe(`${prefix}.evt.mixed.>`);
    await node.stop();
  });

  it('keeps an event in progress alive past the ack wait, so it is not delivered twice', async () => {
    const prefix = uniqueName('rx');
    let starts = 0;
    const slow = defineReactor({
      name: 'slow',
      aggregates: [Account],
      on: {
        'Account.Opened': async () => {
          starts += 1;
          await sleep(1_500);
        },
      },
    });
    const { node } = await reactorNode(nc, prefix, [slow], { reactors: { ackWaitMs: 500 } });
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await waitFor(async () => (await consumerInfo(prefix, 'slow')).ack_floor.stream_seq === 1);
    expect(starts).toBe(1);
    expect((await consumerInfo(prefix, 'slow')).num_redelivered).toBe(0);
    await node.stop();
  });

  it('acknowledges nothing it did not finish when closed; the next listener gets it at once', async () => {
    const prefix = uniqueName('rx');
    const gate = deferred();
    const starts: string[] = [];
    let release = false;
    const slow = defineReactor({
      name: 'slow',
      aggregates: [Account],
      on: {
        'Account.Opened': async (event) => {
          starts.push(event.meta.aggregateId);
          if (!release) await gate.promise;
        },
      },
    });
    // A long ack wait: a prompt redelivery can only come from the close giving the event back.
    const first = await reactorNode(nc, prefix, [slow], { reactors: { ackWaitMs: 30_000 } });
    await first.node.aggregate(Account, 'a').open({ owner: 'ann' });
    await waitFor(() => starts.length === 1);
    const closing = Date.now();
    await first.node.stop(100);
    expect(Date.now() - closing).toBeLessThan(2_000);
    const info = await consumerInfo(prefix, 'slow');
    expect(info.ack_floor.stream_seq).toBe(0);

    release = true;
    const started = Date.now();
    const second = await reactorNode(nc, prefix, [slow], { reactors: { ackWaitMs: 30_000 } });
    await waitFor(() => starts.length === 2);
    expect(Date.now() - started).toBeLessThan(3_000);
    await waitFor(async () => (await consumerInfo(prefix, 'slow')).ack_floor.stream_seq === 1);
    gate.resolve();
    await second.node.stop();
  });

  it('sends commands for domains it does not host through the reactors.send option', async () => {
    const forward = defineReactor({
      name: 'forward',
      aggregates: [Account],
      retry: { attempts: 1 },
      on: {
        'Account.Deposited': async (event, ctx) => {
          await ctx.send({
            domain: 'ledger',
            aggregate: 'Entry',
            id: 'x',
            command: 'record',
            input: { amount: event.data.amount },
          });
        },
      },
    });
    const sent: CommandRequest[] = [];
    const { node } = await reactorNode(nc, uniqueName('rx'), [forward], {
      reactors: {
        send: (command) => {
          sent.push(command);
          const result = {
            version: 1,
            events: [],
            response: undefined,
            duplicate: false,
            position: 0,
          };
          return Promise.resolve({ ...result, commandId: command.commandId ?? '' });
        },
      },
    });
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    const opened = await node.aggregate(Account, 'a').deposit({ amount: 9 });
    await waitFor(() => sent.length === 1);
    expect(sent[0]).toMatchObject({
      domain: 'ledger',
      aggregate: 'Entry',
      commandId: 'forward:bank/Account/a@2:1',
      correlationId: opened.commandId,
      causationId: 'bank/Account/a@2',
    });
    await node.stop();
  });
});
