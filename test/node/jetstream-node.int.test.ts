import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { assign, setup } from 'xstate';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  JetStreamEventStore,
  KvSnapshotStore,
  TestClock,
  createNode,
  defineAggregate,
  defineDomain,
  isInfrastructureError,
  snapshotBucket,
  snapshotKey,
  type EventMetadata,
  type DomainNode,
  type NodeOptions,
} from '../../runtime/index.js';
import { connectShared, startNatsServer, uniqueName } from '../helpers/nats.js';

/** A logger whose lines the test can read. */
function capturingLogger(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines: () => lines };
}

async function jetstreamNode(
  nc: NatsConnection,
  prefix: string,
  options: Partial<NodeOptions> = {},
): Promise<{ node: DomainNode; store: JetStreamEventStore; snapshots: KvSnapshotStore }> {
  const store = await JetStreamEventStore.open({ connection: nc, prefix });
  const snapshots = new KvSnapshotStore({ connection: nc, prefix });
  const node = createNode({ domains: [bank], store, snapshots, ...options });
  await node.start();
  return { node, store, snapshots };
}

describe('a node on the JetStream store', () => {
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    await nc.close();
  });

  it('runs commands, passivates, and comes back with the same state from the stream', async () => {
    const clock = new TestClock();
    const { node, store } = await jetstreamNode(nc, uniqueName('n'), {
      clock,
      supervisor: { idleTimeoutMs: 1_000 },
    });
    const account = node.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    await Promise.all(Array.from({ length: 50 }, () => account.deposit({ amount: 2 })));
    const before = await node.view(Account, 'acc-1');
    expect(before).toMatchObject({ value: 'open', version: 51, context: { balance: 100 } });
    clock.advance(5_000);
    expect(node.stats().active).toBe(0);
    const after = await node.view(Account, 'acc-1');
    expect({ ...after, lifecycle: undefined }).toEqual({ ...before, lifecycle: undefined });
    await node.stop();
    await store.close();
  });

  it('lets two nodes on two connections hammer the same accounts without losing an update', async () => {
    const prefix = uniqueName('n');
    const nc2 = await connect({ servers: nc.getServer() });
    const a = await jetstreamNode(nc, prefix);
    const b = await jetstreamNode(nc2, prefix);
    const ids = ['h1', 'h2', 'h3'];
    for (const id of ids) await a.node.aggregate(Account, id).open({ owner: id });
    const acknowledged: string[] = [];
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      const node = i % 2 === 0 ? a.node : b.node;
      const id = ids[i % ids.length]!;
      const commandId = `dep-${i}`;
      sends.push(
        node
          .aggregate(Account, id)
          .deposit({ amount: 1 }, { commandId })
          .then(() => acknowledged.push(commandId)),
      );
    }
    const outcomes = await Promise.allSettled(sends);
    expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);
    const stored: string[] = [];
    for (const id of ids) {
      const versions: number[] = [];
      for await (const commit of a.store.read({ domain: 'bank', aggregate: 'Account', id })) {
        for (const event of commit.events) {
          versions.push(event.meta.version);
          if (event.type === 'Deposited') stored.push(event.meta.commandId);
        }
      }
      expect(versions).toEqual(Array.from({ length: versions.length }, (_, v) => v + 1));
    }
    expect(stored.sort()).toEqual([...acknowledged].sort());
    const balances = await Promise.all(ids.map((id) => b.node.view(Account, id)));
    expect(balances.reduce((sum, v) => sum + (v.context as { balance: number }).balance, 0)).toBe(
      300,
    );
    await a.node.stop();
    await b.node.stop();
    await a.store.close();
    await b.store.close();
    await nc2.close();
  });

  it('answers a resent command id with the first reply and stores it once, even on another node', async () => {
    const prefix = uniqueName('n');
    const a = await jetstreamNode(nc, prefix);
    const b = await jetstreamNode(nc, prefix);
    await a.node.aggregate(Account, 'idem').open({ owner: 'ann' }, { commandId: 'open-1' });
    const first = await a.node
      .aggregate(Account, 'idem')
      .deposit({ amount: 5 }, { commandId: 'dep-1' });
    const again = await b.node
      .aggregate(Account, 'idem')
      .deposit({ amount: 5 }, { commandId: 'dep-1' });
    expect(again).toMatchObject({ commandId: 'dep-1', version: first.version, duplicate: true });
    expect(again.response).toEqual(first.response);
    const view = await b.node.view(Account, 'idem');
    expect(view).toMatchObject({ version: 2, context: { balance: 5 } });
    await a.node.stop();
    await b.node.stop();
  });

  it('starts from a snapshot and replays only the commits after it', async () => {
    const prefix = uniqueName('n');
    const clock = new TestClock();
    const { node, store, snapshots } = await jetstreamNode(nc, prefix, {
      clock,
      supervisor: { snapshotEvery: 10, idleTimeoutMs: 1_000 },
    });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'snap' };
    const account = node.aggregate(Account, 'snap');
    await account.open({ owner: 'ann' });
    for (let i = 0; i < 24; i++) await account.deposit({ amount: 1 });
    await waitFor(async () => ((await snapshots.load(stream))?.version ?? 0) >= 20);
    const snapshot = await snapshots.load(stream);
    expect(snapshot).toMatchObject({ fingerprint: Account.fingerprint });
    clock.advance(5_000);
    expect(node.stats().active).toBe(0);
    // Mark the snapshot: a balance no replay from the start could give. Activation must start
    // from it and apply only the commits after it.
    await snapshots.save(stream, {
      ...snapshot!,
      state: {
        ...(snapshot!.state as { context: object }),
        context: { owner: 'ann', balance: 1_000, overdraftLimit: 0 },
      },
    });
    const view = await node.view(Account, 'snap');
    expect(view).toMatchObject({ version: 25, position: expect.any(Number), value: 'open' });
    expect(view.context).toMatchObject({ balance: 1_000 + (25 - snapshot!.version) });
    await node.stop();
    await store.close();
  });

  it('ignores a snapshot taken by another machine definition, replays everything and rewrites it', async () => {
    const prefix = uniqueName('n');
    const { node, snapshots } = await jetstreamNode(nc, prefix, {
      supervisor: { snapshotEvery: 5 },
    });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'stale' };
    await node.aggregate(Account, 'stale').open({ owner: 'ann' });
    for (let i = 0; i < 6; i++) await node.aggregate(Account, 'stale').deposit({ amount: 10 });
    await waitFor(async () => (await snapshots.load(stream)) !== undefined);
    // A snapshot that claims a wrong balance, under an old fingerprint.
    const current = (await snapshots.load(stream))!;
    await snapshots.save(stream, {
      ...current,
      fingerprint: 'an-older-definition',
      state: {
        ...(current.state as object),
        context: { owner: 'x', balance: 999_999, overdraftLimit: 0 },
      },
    });
    await node.stop();
    const fresh = await jetstreamNode(nc, prefix, { supervisor: { snapshotEvery: 5 } });
    const view = await fresh.node.view(Account, 'stale');
    expect(view).toMatchObject({ version: 7, context: { balance: 60 } });
    await waitFor(
      async () => (await fresh.snapshots.load(stream))?.fingerprint === Account.fingerprint,
    );
    await fresh.node.stop();
  });

  it('ignores a corrupt snapshot with a warning and never trusts it', async () => {
    const prefix = uniqueName('n');
    const { logger, lines } = capturingLogger();
    const { node, snapshots } = await jetstreamNode(nc, prefix, {
      logger,
      supervisor: { snapshotEvery: 2 },
    });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'rot' };
    await node.aggregate(Account, 'rot').open({ owner: 'ann' });
    await node.aggregate(Account, 'rot').deposit({ amount: 7 });
    await node.stop();
    await snapshots.corrupt(stream, new Uint8Array([0xc1, 0xff, 0x00]));
    const kv = await new Kvm(nc).open(snapshotBucket(prefix, 'bank'));
    expect((await kv.get(snapshotKey(stream)))?.value).toEqual(new Uint8Array([0xc1, 0xff, 0x00]));
    const fresh = await jetstreamNode(nc, prefix, { logger, supervisor: { snapshotEvery: 2 } });
    const view = await fresh.node.view(Account, 'rot');
    expect(view).toMatchObject({ version: 2, context: { balance: 7 } });
    expect(lines().some((l) => String(l.msg).includes('snapshot cannot be used'))).toBe(true);
    await waitFor(async () => (await fresh.snapshots.load(stream))?.version === 2);
    await fresh.node.stop();
  });

  it('fails only the aggregate whose stream holds a corrupt commit, naming subject and sequence', async () => {
    const prefix = uniqueName('n');
    const { node, store } = await jetstreamNode(nc, prefix, { logger: pino({ level: 'silent' }) });
    await node.aggregate(Account, 'bad').open({ owner: 'ann' });
    await node.stop();
    const subject = store.subject({ domain: 'bank', aggregate: 'Account', id: 'bad' });
    const ack = await jetstream(nc).publish(subject, new TextEncoder().encode('not a commit'));
    const fresh = await jetstreamNode(nc, prefix, { logger: pino({ level: 'silent' }) });
    const error = await fresh.node
      .aggregate(Account, 'bad')
      .deposit({ amount: 1 })
      .catch((e: unknown) => e);
    expect(isInfrastructureError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'CORRUPT_DATA', details: { subject, sequence: ack.seq } });
    const good = await fresh.node.aggregate(Account, 'good').open({ owner: 'bob' });
    expect(good.version).toBe(1);
    const messages = (await (await jetstreamManager(nc)).streams.info(store.streamName('bank')))
      .state.messages;
    expect(messages).toBe(3);
    await fresh.node.stop();
  });

  it('upcasts events written by an older definition before validating them', async () => {
    const prefix = uniqueName('n');
    const v1Events = { Registered: z.object({ name: z.string() }) };
    const v2Events = { Registered: z.object({ first: z.string(), last: z.string() }) };
    // Both versions fold the same way: the payload, whatever its shape, becomes the context.
    const machineFor = () =>
      setup({
        types: {
          context: {} as { data: unknown },
          events: {} as { type: 'Registered'; data: unknown; meta: EventMetadata },
        },
      }).createMachine({
        initial: 'new',
        context: { data: null },
        states: {
          new: {
            on: {
              Registered: { target: 'known', actions: assign({ data: ({ event }) => event.data }) },
            },
          },
          known: {},
        },
      });
    const PersonV1 = defineAggregate({
      name: 'Person',
      events: v1Events,
      machine: machineFor(),
      commands: (command) => ({
        register: command(z.object({ name: z.string() }), (_s, input) => ({
          type: 'Registered',
          data: input,
        })),
      }),
    });
    const PersonV2 = defineAggregate({
      name: 'Person',
      events: v2Events,
      machine: machineFor(),
      upcasters: {
        Registered: [
          (old: { name: string }) => {
            const [first = '', ...rest] = old.name.split(' ');
            return { first, last: rest.join(' ') };
          },
        ],
      },
      commands: (command) => ({
        register: command(z.object({ first: z.string(), last: z.string() }), (_s, input) => ({
          type: 'Registered',
          data: input,
        })),
      }),
    });
    expect(PersonV2.fingerprint).not.toBe(PersonV1.fingerprint);
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const old = createNode({
      domains: [defineDomain({ name: 'people', aggregates: [PersonV1] })],
      store,
    });
    await old.aggregate(PersonV1, 'p1').register({ name: 'Ada King Lovelace' });
    await old.stop();
    const current = createNode({
      domains: [defineDomain({ name: 'people', aggregates: [PersonV2] })],
      store,
    });
    const view = await current.view(PersonV2, 'p1');
    expect(view).toMatchObject({
      value: 'known',
      context: { data: { first: 'Ada', last: 'King Lovelace' } },
    });
    const written = await current
      .aggregate(PersonV2, 'p2')
      .register({ first: 'Alan', last: 'Turing' });
    expect(written.events[0]?.meta.schemaVersion).toBe(2);
    const stored = [];
    for await (const commit of store.read({ domain: 'people', aggregate: 'Person', id: 'p2' })) {
      stored.push(...commit.events);
    }
    expect(stored[0]?.meta.schemaVersion).toBe(2);
    await current.stop();
    await store.close();
  });
});

describe('a node across a nats-server restart', () => {
  it('keeps every acknowledged command and serves again after kill -9 and restart', async () => {
    const server = await startNatsServer();
    try {
      const nc = await connect({
        servers: server.url,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      });
      const { node, store } = await jetstreamNode(nc, 'restart', {
        logger: pino({ level: 'silent' }),
      });
      const account = node.aggregate(Account, 'r1');
      await account.open({ owner: 'ann' });
      for (let i = 0; i < 10; i++) await account.deposit({ amount: 1 }, { commandId: `d${i}` });
      await server.kill();
      await server.restart();
      const deadline = Date.now() + 10_000;
      let last: unknown;
      for (;;) {
        try {
          last = await account.deposit({ amount: 1 }, { commandId: 'after' });
          break;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      expect(last).toMatchObject({ version: 12 });
      const fresh = createNode({ domains: [bank], store });
      expect(await fresh.view(Account, 'r1')).toMatchObject({
        version: 12,
        context: { balance: 11 },
      });
      await node.stop();
      await store.close();
      await nc.close();
    } finally {
      await server.cleanup();
    }
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a node starting from a snapshot', () => {
  it('answers a command resent after the snapshot as a duplicate, from the original commit', async () => {
    const nc = await connectShared();
    const clock = new TestClock();
    const { node, store, snapshots } = await jetstreamNode(nc, uniqueName('n'), {
      clock,
      supervisor: { snapshotEvery: 1, idleTimeoutMs: 1_000 },
    });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'resent' };
    const account = node.aggregate(Account, 'resent');
    await account.open({ owner: 'ann' });
    const first = await account.deposit({ amount: 3 }, { commandId: 'dep-x' });
    await waitFor(async () => (await snapshots.load(stream))?.version === 2);
    clock.advance(5_000);
    expect(node.stats().active).toBe(0);
    // The snapshot covers dep-x, so the reactivated actor does not remember it; the stream's
    // deduplication does, and the actor reads the original commit to answer.
    const again = await account.deposit({ amount: 3 }, { commandId: 'dep-x' });
    expect(again).toMatchObject({ commandId: 'dep-x', version: 2, duplicate: true });
    expect(again.response).toEqual(first.response);
    expect(again.events).toEqual(first.events);
    const commits = [];
    for await (const commit of store.read(stream)) commits.push(commit);
    expect(commits).toHaveLength(2);
    await node.stop();
    await store.close();
    await nc.close();
  });
});
