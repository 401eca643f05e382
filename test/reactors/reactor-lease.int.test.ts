import { AckPolicy, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  DomainError,
  JetStreamEventStore,
  JetStreamReactors,
  createNode,
  defineDomain,
  defineReactor,
  reactorConsumerName,
  streamName,
  type DomainNode,
} from '../../runtime/index.js';
import { projectionLeaseBucket, reactorLeaseKey } from '../../runtime/nats/subjects.js';
import { connectShared, uniqueName } from '../helpers/nats.js';
import { checkRuns, type RunRecord } from '../fixtures/reactor-runs.js';
import { rejectionOf, silentLogger } from '../fixtures/test-support.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

describe('a reactor hosted by several nodes', () => {
  const connections: NatsConnection[] = [];
  const nodes: DomainNode[] = [];
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    for (const node of nodes) await node.stop(1_000).catch(() => undefined);
    for (const connection of connections) await connection.close();
    await nc.close();
  });

  /**
   * A node on its own connection hosting bank's Account with the reactor `serial`: every deposit
   * takes `slowMs`, the first try of every fourth amount fails, and each run is logged.
   */
  async function host(
    prefix: string,
    name: string,
    log: RunRecord[],
    options: { slowMs?: number; leaseMs: number; ackWaitMs: number },
  ): Promise<DomainNode> {
    const connection = await connectShared({ name });
    connections.push(connection);
    const tries = new Map<string, number>();
    const serial = defineReactor({
      name: 'serial',
      aggregates: [Account],
      concurrency: 4,
      retry: { attempts: 5, backoffMs: 20 },
      on: {
        'Account.Deposited': async (event) => {
          const run = { host: name, id: event.meta.aggregateId, version: event.meta.version };
          log.push({ ...run, phase: 'start' });
          let ok = false;
          try {
            await sleep(options.slowMs ?? 20);
            const key = `${run.id}@${run.version}`;
            const attempt = (tries.get(key) ?? 0) + 1;
            tries.set(key, attempt);
            if (event.data.amount % 4 === 0 && attempt === 1) throw new Error(`injected ${key}`);
            ok = true;
          } finally {
            log.push({ ...run, phase: 'end', ok });
          }
        },
      },
    });
    const store = await JetStreamEventStore.open({ connection, prefix });
    const node = createNode({
      domains: [defineDomain({ name: 'bank', aggregates: [Account], reactors: [serial] })],
      store,
      logger: silentLogger,
      reactors: { ackWaitMs: options.ackWaitMs },
      projections: { leaseMs: options.leaseMs },
    });
    nodes.push(node);
    await node.start();
    return node;
  }

  /** Opens the accounts, then writes `rounds` deposits (amounts 1, 2, …) on each, round by round. */
  async function write(
    prefix: string,
    ids: string[],
    rounds: number,
    pauseMs = 0,
  ): Promise<{ done: Promise<void> }> {
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const writer = createNode({ domains: [bank], store, logger: silentLogger });
    nodes.push(writer);
    await writer.start();
    await Promise.all(ids.map((id) => writer.aggregate(Account, id).open({ owner: id })));
    const done = (async () => {
      for (let amount = 1; amount <= rounds; amount++) {
        await Promise.all(ids.map((id) => writer.aggregate(Account, id).deposit({ amount })));
        if (pauseMs > 0) await sleep(pauseMs);
      }
    })();
    return { done };
  }

  const stats = (node: DomainNode) => node.stats().reactors['bank.serial']!;
  const nodeId = (node: DomainNode) => (node.reactors as JetStreamReactors).nodeId;
  const versions = (rounds: number) => Array.from({ length: rounds }, (_, i) => i + 2);

  it("runs it on one node at a time, an aggregate's events one after another and in order; a graceful stop hands over at once", async () => {
    const prefix = uniqueName('rxl');
    const log: RunRecord[] = [];
    // A long ack wait: a handover that waited for redeliveries would take seconds.
    const options = { leaseMs: 3_000, ackWaitMs: 6_000 };
    const a = await host(prefix, 'a', log, options);
    const b = await host(prefix, 'b', log, options);
    const [leader, standby] = stats(a).here ? [a, b] : [b, a];
    expect([stats(a).here, stats(b).here].sort()).toEqual([false, true]);
    expect(stats(standby)).toMatchObject({ here: false, leader: nodeId(leader), lag: 0 });
    expect(stats(leader)).toMatchObject({ here: true, leader: nodeId(leader) });

    const ids = Array.from({ length: 8 }, (_, i) => `g${i}`);
    const rounds = 20;
    const writing = await write(prefix, ids, rounds, 40);
    await waitFor(() => log.filter((r) => r.phase === 'end' && r.ok).length >= 40);
    expect(log.every((r) => r.host === log[0]!.host)).toBe(true);
    expect(stats(standby).handled).toBe(0);

    await leader.stop(5_000);
    const stoppedAt = Date.now();
    const before = log.length;
    await waitFor(() => log.length > before);
    const handoverMs = Date.now() - stoppedAt;
    // Released at once: the standby's next try (every third of the lease time) gets it.
    expect(handoverMs).toBeLessThan(1_800);
    console.info(`reactor lease: graceful handover in ${handoverMs} ms`);
    expect(stats(standby).here).toBe(true);
    await writing.done;
    await waitFor(() => ids.every((id) => new Set(checkRuns(log).handled.get(id)).size === rounds));

    const check = checkRuns(log);
    expect(check.overlaps).toEqual([]);
    expect(check.outOfOrder).toEqual([]);
    expect(check.hostOverlaps).toEqual([]);
    // Nothing handled twice: the leader finished what it ran and gave back the rest.
    for (const id of ids) expect(check.handled.get(id), id).toEqual(versions(rounds));
    const hosts = log.map((r) => r.host);
    const firstOfStandby = hosts.indexOf(hosts.at(-1)!);
    expect(hosts.slice(0, firstOfStandby).every((h) => h === hosts[0])).toBe(true);
    expect(hosts.slice(firstOfStandby).every((h) => h === hosts.at(-1))).toBe(true);
  }, 30_000);

  it('fails listening when it cannot take the lead at once, gives the lease back, and can listen again', async () => {
    const prefix = uniqueName('rxl');
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    await store.ensureDomains(['bank']);
    const jsm = await jetstreamManager(nc);
    // A push consumer of the reactor's name: the reactor cannot use it.
    await jsm.consumers.add(streamName(prefix, 'bank'), {
      durable_name: reactorConsumerName(prefix, 'bank', 'serial'),
      deliver_subject: `${prefix}.elsewhere`,
      ack_policy: AckPolicy.Explicit,
    });
    const log: RunRecord[] = [];
    const failing = host(prefix, 'a', log, { leaseMs: 3_000, ackWaitMs: 1_000 });
    expect((await rejectionOf(failing)).code).toBe('CONSUMER_CONFIG_CONFLICT');
    const kv = await new Kvm(nc).open(projectionLeaseBucket(prefix));
    expect(await kv.get(reactorLeaseKey('bank', 'serial'))).toMatchObject({ operation: 'DEL' });

    await jsm.consumers.delete(
      streamName(prefix, 'bank'),
      reactorConsumerName(prefix, 'bank', 'serial'),
    );
    const node = nodes.at(-1)!;
    await node.start();
    expect(stats(node)).toMatchObject({ here: true });
    await (
      await write(prefix, ['r'], 2)
    ).done;
    await waitFor(() => checkRuns(log).handled.get('r')?.length === 2);
  });

  it('answers dead-letter requests on the node that runs it; a standby refuses them and names the leader', async () => {
    const prefix = uniqueName('rxl');
    const ran: string[] = [];
    let fixed = false;
    const start = async (name: string) => {
      const connection = await connectShared({ name });
      connections.push(connection);
      const fragile = defineReactor({
        name: 'fragile',
        aggregates: [Account],
        retry: { attempts: 2, backoffMs: 5 },
        on: {
          'Account.Deposited': (event) => {
            ran.push(`${name} ${event.data.amount}`);
            if (event.data.amount === 13 && !fixed) throw new DomainError('UNLUCKY', 'thirteen');
          },
        },
      });
      const store = await JetStreamEventStore.open({ connection, prefix });
      const node = createNode({
        domains: [defineDomain({ name: 'bank', aggregates: [Account], reactors: [fragile] })],
        store,
        logger: silentLogger,
        reactors: { ackWaitMs: 2_000 },
        projections: { leaseMs: 1_000 },
      });
      nodes.push(node);
      await node.start();
      return node;
    };
    const a = await start('a');
    const b = await start('b');
    const leader = a.stats().reactors['bank.fragile']!.here ? a : b;
    const standby = leader === a ? b : a;
    const name = leader === a ? 'a' : 'b';
    await leader.aggregate(Account, 'x').open({ owner: 'x' });
    await leader.aggregate(Account, 'x').deposit({ amount: 13 });
    await waitFor(async () => (await standby.reactors.deadLetters()).length === 1);
    const [deadLetter] = await standby.reactors.deadLetters();

    const refused = await rejectionOf(standby.reactors.replay(deadLetter!.id));
    expect(refused.code).toBe('REACTOR_UNAVAILABLE');
    expect(refused.message).toContain(`runs on node ${nodeId(leader)}, not here`);
    expect((await rejectionOf(standby.reactors.discard(deadLetter!.id))).code).toBe(
      'REACTOR_UNAVAILABLE',
    );

    // Over NATS (what `jetactor deadletters` does): only the leader listens, and runs it.
    fixed = true;
    const reply = await nc.request(
      `${prefix}.rx.bank.fragile.replay`,
      JSON.stringify({ id: deadLetter!.id }),
      { timeout: 5_000 },
    );
    expect(JSON.parse(new TextDecoder().decode(reply.data))).toMatchObject({ ok: true });
    expect(ran).toEqual([`${name} 13`, `${name} 13`, `${name} 13`]);
    expect(await leader.reactors.deadLetters()).toEqual([]);
  }, 20_000);

  it('stops at once when its lease is taken, acknowledges nothing after that, and the next holder handles everything in order', async () => {
    const prefix = uniqueName('rxl');
    const log: RunRecord[] = [];
    const options = { leaseMs: 1_500, ackWaitMs: 1_000, slowMs: 150 };
    const a = await host(prefix, 'a', log, options);
    const b = await host(prefix, 'b', log, options);
    const leader = stats(a).here ? a : b;
    const ids = Array.from({ length: 6 }, (_, i) => `l${i}`);
    const rounds = 8;
    await (
      await write(prefix, ids, rounds)
    ).done;
    await waitFor(() => log.some((r) => r.phase === 'end' && r.ok));

    // Another writer takes the key: the leader's next renewal is refused.
    const kv = await new Kvm(nc).open(projectionLeaseBucket(prefix));
    await kv.put(reactorLeaseKey('bank', 'serial'), JSON.stringify({ owner: 'intruder' }));
    await waitFor(() => !stats(leader).here, 2_000);
    const lostAt = log.length;
    // Nothing starts while the intruder holds the key (until it expires after the lease time).
    await sleep(700);
    expect(log.slice(lostAt).filter((r) => r.phase === 'start')).toEqual([]);
    await waitFor(() => ids.every((id) => new Set(checkRuns(log).handled.get(id)).size === rounds));

    const check = checkRuns(log);
    expect(check.overlaps).toEqual([]);
    expect(check.outOfOrder).toEqual([]);
    expect(check.hostOverlaps).toEqual([]);
    for (const id of ids) {
      expect([...new Set(check.handled.get(id))], id).toEqual(versions(rounds));
    }
    await waitFor(() => [a, b].some((n) => stats(n).here && stats(n).lag === 0));
  }, 30_000);
});
