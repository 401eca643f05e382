import { Kvm } from '@nats-io/kv';
import { headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  CommandRouter,
  JetStreamEventStore,
  PartitionLeases,
  commandHeaders,
  createClient,
  createNode,
  forwardSubject,
  isJetactorError,
  leaseBucket,
  partitionOf,
  type JetactorClient,
  type RoutingStats,
  type ServiceStats,
} from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import {
  killAllNodes,
  spawnNode,
  startNodeProcess,
  type NodeProcess,
} from '../fixtures/node-process.js';
import { storedCommandIds, storedCommits } from '../fixtures/stream-contents.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What `$SRV.STATS` shows of one node: its command endpoint's data. */
interface NodeView {
  nodeId: string;
  /** Supervisor conflicts since start. */
  conflicts: number;
  /** Partition affinity of domain bank. */
  routing: RoutingStats;
}

/** Asks every node on `prefix` for its stats; waits for `expected` replies (at most 1 s). */
async function nodeViews(
  nc: NatsConnection,
  prefix: string,
  expected: number,
): Promise<NodeView[]> {
  const views: NodeView[] = [];
  const replies = await nc.requestMany(`$SRV.STATS.${prefix}`, '', {
    strategy: 'count',
    maxMessages: expected,
    maxWait: 1_000,
  });
  for await (const msg of replies) {
    const stats = msg.json<ServiceStats>();
    const data = stats.endpoints.find((e) => e.name === 'cmd-bank')?.data as
      { actors: { conflicts: number; routing: { bank: RoutingStats } } } | undefined;
    if (data === undefined) throw new Error(`no cmd-bank endpoint in ${JSON.stringify(stats)}`);
    views.push({
      nodeId: stats.metadata.nodeId ?? '',
      conflicts: data.actors.conflicts,
      routing: data.actors.routing.bank,
    });
  }
  return views.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
}

/** `count` nodes answer, each sees `count` live nodes, and they own every partition, fairly. */
function stable(views: readonly NodeView[], count: number, partitions = 64): boolean {
  if (views.length !== count) return false;
  const owned = views.map((v) => v.routing.owned);
  return (
    views.every((v) => v.routing.liveNodes === count) &&
    owned.reduce((sum, n) => sum + n, 0) === partitions &&
    Math.max(...owned) - Math.min(...owned) <= 1
  );
}

/** Polls the nodes' stats until `condition` holds; resolves with them and the time it took. */
async function waitForViews(
  nc: NatsConnection,
  prefix: string,
  expected: number,
  condition: (views: NodeView[]) => boolean,
  timeoutMs: number,
  what: string,
): Promise<{ views: NodeView[]; ms: number }> {
  const start = Date.now();
  for (;;) {
    const views = await nodeViews(nc, prefix, expected);
    if (condition(views)) return { views, ms: Date.now() - start };
    if (Date.now() - start > timeoutMs) {
      throw new Error(`${what} not reached within ${timeoutMs} ms: ${JSON.stringify(views)}`);
    }
    await sleep(20);
  }
}

/** Partition → { owner, token } as the lease bucket holds them now. */
async function leaseTable(
  nc: NatsConnection,
  prefix: string,
): Promise<Map<number, { owner: string; token: number }>> {
  const kv = await new Kvm(nc).open(leaseBucket(prefix, 'bank'));
  const table = new Map<number, { owner: string; token: number }>();
  for (let partition = 0; partition < 64; partition++) {
    const entry = await kv.get(`partition.${partition}`);
    if (entry === null || entry.operation !== 'PUT') continue;
    const value = entry.json<{ node: string; token?: number }>();
    table.set(partition, { owner: value.node, token: value.token ?? entry.revision });
  }
  return table;
}

/** An account id in `partition`. */
function idIn(partition: number, stem: string): string {
  for (let i = 0; ; i++) {
    const id = `${stem}-${i}`;
    if (partitionOf('Account', id) === partition) return id;
  }
}

/** One deposit sent under load. */
interface Sent {
  commandId: string;
  id: string;
  sentAt: number;
  ackAt?: number;
  code?: string;
  retryable?: boolean;
}

/**
 * Deposits of 1 from `workers` concurrent loops into accounts picked uniformly at random, each
 * with its own command id (the client retries with the same one), until `stop()`.
 */
function uniformLoad(
  client: JetactorClient,
  ids: readonly string[],
  workers: number,
  stem: string,
): { stop: () => Promise<Sent[]> } {
  const sent: Sent[] = [];
  let running = true;
  let next = 0;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const record: Sent = {
        commandId: `${stem}-${next++}`,
        id: ids[Math.floor(Math.random() * ids.length)]!,
        sentAt: Date.now(),
      };
      sent.push(record);
      try {
        await client
          .aggregate(Account, record.id, 'bank')
          .deposit({ amount: 1 }, { commandId: record.commandId });
        record.ackAt = Date.now();
      } catch (error) {
        if (!isJetactorError(error)) throw error;
        record.code = error.code;
        record.retryable = error.retryable;
      }
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return sent;
    },
  };
}

/**
 * Zero lost updates: every acknowledged deposit stored exactly once, no command id stored twice,
 * versions of every account gap-free, and each balance equal to the deposits stored for it.
 */
async function expectNoLostUpdate(
  nc: NatsConnection,
  client: JetactorClient,
  prefix: string,
  ids: readonly string[],
  sent: readonly Sent[],
): Promise<{ stored: number }> {
  const stored = await storedCommandIds(nc, prefix, 'bank');
  for (const s of sent)
    if (s.ackAt !== undefined) expect(stored.get(s.commandId), s.commandId).toBe(1);
  for (const [commandId, times] of stored) expect(times, commandId).toBe(1);
  for (const s of sent)
    if (s.ackAt === undefined) expect(s.retryable, `${s.commandId} ${s.code}`).toBe(true);
  const versions = new Map<string, number[]>();
  const deposits = new Map<string, number>();
  for (const commit of await storedCommits(nc, prefix, 'bank')) {
    const list = versions.get(commit.stream.id) ?? [];
    for (const event of commit.events) {
      list.push(event.meta.version);
      if (event.type === 'Deposited') {
        deposits.set(commit.stream.id, (deposits.get(commit.stream.id) ?? 0) + 1);
      }
    }
    versions.set(commit.stream.id, list);
  }
  for (const [id, list] of versions) {
    expect(list, id).toEqual(Array.from({ length: list.length }, (_, i) => i + 1));
  }
  const views = await Promise.all(ids.map((id) => client.view(Account, id, 'bank')));
  for (const [index, view] of views.entries()) {
    const id = ids[index]!;
    const acked = sent.filter((s) => s.id === id && s.ackAt !== undefined).length;
    const balance = (view.context as { balance: number }).balance;
    expect(balance, id).toBe(deposits.get(id) ?? 0);
    expect(balance, id).toBeGreaterThanOrEqual(acked);
  }
  return { stored: [...deposits.values()].reduce((sum, n) => sum + n, 0) };
}

/** Conflicts counted by the nodes on `prefix` (with or without affinity). */
async function conflictCount(
  nc: NatsConnection,
  prefix: string,
  expected: number,
): Promise<number> {
  let total = 0;
  let replies = 0;
  const messages = await nc.requestMany(`$SRV.STATS.${prefix}`, '', {
    strategy: 'count',
    maxMessages: expected,
    maxWait: 1_000,
  });
  for await (const msg of messages) {
    const endpoint = msg.json<ServiceStats>().endpoints.find((e) => e.name === 'cmd-bank');
    total += (endpoint?.data as { actors: { conflicts: number } }).actors.conflicts;
    replies += 1;
  }
  expect(replies).toBe(expected);
  return total;
}

function sum(views: readonly NodeView[], pick: (view: NodeView) => number): number {
  return views.reduce((total, view) => total + pick(view), 0);
}

describe('partition affinity between node processes', () => {
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    await killAllNodes();
    await nc.close();
  });

  function startNodes(
    prefix: string,
    ids: readonly string[],
    args: string[],
  ): Promise<NodeProcess[]> {
    return Promise.all(
      ids.map((nodeId) =>
        startNodeProcess({
          natsUrl: sharedNatsUrl(),
          prefix,
          args: ['--node-id', nodeId, ...args],
        }),
      ),
    );
  }

  it('serves each aggregate on its partition owner: three nodes under uniform load lose no update and rarely conflict', async () => {
    const prefix = uniqueName('aff');
    const nodes = await startNodes(prefix, ['n1', 'n2', 'n3'], ['--lease-time', '1500']);
    const { ms: settleMs } = await waitForViews(
      nc,
      prefix,
      3,
      (views) => stable(views, 3),
      10_000,
      'a fair split over three nodes',
    );
    const client = createClient({ connection: nc, prefix, timeoutMs: 5_000, retries: 3 });
    const ids = Array.from({ length: 300 }, (_, i) => `u-${i}`);
    await Promise.all(ids.map((id) => client.aggregate(Account, id, 'bank').open({ owner: id })));
    const before = await nodeViews(nc, prefix, 3);

    const load = uniformLoad(client, ids, 48, 'dep');
    await sleep(3_000);
    const sent = await load.stop();
    const after = await nodeViews(nc, prefix, 3);

    expect(stable(after, 3)).toBe(true);
    const moves = (views: NodeView[]) =>
      sum(views, (v) => v.routing.acquisitions + v.routing.releases + v.routing.losses);
    expect(moves(after)).toBe(moves(before));
    const acked = sent.filter((s) => s.ackAt !== undefined).length;
    expect(acked).toBe(sent.length);
    const conflicts = sum(after, (v) => v.conflicts) - sum(before, (v) => v.conflicts);
    const forwarded =
      sum(after, (v) => v.routing.forwarded) - sum(before, (v) => v.routing.forwarded);
    const servedForOthers =
      sum(after, (v) => v.routing.servedForOthers) - sum(before, (v) => v.routing.servedForOthers);
    const fallbacks = (views: NodeView[]) =>
      sum(views, (v) => Object.values(v.routing.fallbacks).reduce((a, b) => a + b, 0));
    const rate = conflicts / acked;
    console.info(
      `three nodes, stable membership (fair split ${settleMs} ms after start): ${acked} deposits on ${ids.length} accounts in 3 s, ` +
        `${conflicts} conflicts = ${(100 * rate).toFixed(2)}% of commands; ${forwarded} forwarded to the owner ` +
        `(${((100 * forwarded) / acked).toFixed(0)}%), ${fallbacks(after) - fallbacks(before)} forwards fell back`,
    );
    expect(rate).toBeLessThan(0.05);
    // About two commands in three arrive at a node that does not own their partition.
    expect(forwarded).toBeGreaterThan(acked / 3);
    expect(servedForOthers).toBeGreaterThanOrEqual(forwarded);
    for (const view of after) expect(view.routing.forwarded).toBeGreaterThan(0);

    const { stored } = await expectNoLostUpdate(nc, client, prefix, ids, sent);
    expect(stored).toBe(acked);
    client.close();
    await Promise.all(nodes.map((node) => node.stop()));
  }, 40_000);

  it('counts the conflicts of the same load without affinity (--partitions 0), losing no update either', async () => {
    const prefix = uniqueName('noaff');
    const nodes = await startNodes(prefix, ['o1', 'o2', 'o3'], ['--partitions', '0']);
    const client = createClient({ connection: nc, prefix, timeoutMs: 5_000, retries: 3 });
    const ids = Array.from({ length: 300 }, (_, i) => `o-${i}`);
    await Promise.all(ids.map((id) => client.aggregate(Account, id, 'bank').open({ owner: id })));
    const before = await conflictCount(nc, prefix, 3);
    const load = uniformLoad(client, ids, 48, 'dep');
    await sleep(2_000);
    const sent = await load.stop();
    const conflicts = (await conflictCount(nc, prefix, 3)) - before;
    const acked = sent.filter((s) => s.ackAt !== undefined).length;
    console.info(
      `three nodes without affinity: ${acked} deposits on ${ids.length} accounts in 2 s, ${conflicts} conflicts = ${((100 * conflicts) / acked).toFixed(1)}% of commands`,
    );
    expect(conflicts).toBeGreaterThan(0);
    await expectNoLostUpdate(nc, client, prefix, ids, sent);
    client.close();
    await Promise.all(nodes.map((node) => node.stop()));
  }, 40_000);

  it('moves the partitions of a node killed -9 under load to the others within about the lease time, storing every acknowledged command once', async () => {
    const prefix = uniqueName('akill');
    const leaseMs = 1_000;
    const nodes = await startNodes(
      prefix,
      ['k1', 'k2', 'k3'],
      ['--lease-time', String(leaseMs), '--forward-timeout', '500'],
    );
    await waitForViews(nc, prefix, 3, (views) => stable(views, 3), 10_000, 'three-node split');
    const client = createClient({
      connection: nc,
      prefix,
      timeoutMs: 1_000,
      retries: 10,
      backoffMs: 50,
      maxBackoffMs: 400,
    });
    const ids = Array.from({ length: 90 }, (_, i) => `k-${i}`);
    await Promise.all(ids.map((id) => client.aggregate(Account, id, 'bank').open({ owner: id })));
    const leases = await leaseTable(nc, prefix);
    const victimPartitions = new Set(
      [...leases].filter(([, lease]) => lease.owner === 'k3').map(([partition]) => partition),
    );
    const victimIds = ids.filter((id) => victimPartitions.has(partitionOf('Account', id)));
    expect(victimIds.length).toBeGreaterThan(0);

    const load = uniformLoad(client, ids, 16, 'kill');
    await sleep(700);
    const victim = nodes[2]!;
    victim.signal('SIGKILL');
    const killedAt = Date.now();
    const { views: survivors, ms: takeoverMs } = await waitForViews(
      nc,
      prefix,
      2,
      (views) => stable(views, 2),
      leaseMs * 5,
      'the survivors owning every partition',
    );
    expect((await victim.exited).signal).toBe('SIGKILL');
    await sleep(1_500);
    const sent = await load.stop();
    const after = await nodeViews(nc, prefix, 2);

    // Each of the victim's accounts was served again: time from the kill to the first
    // acknowledgement of a command sent after it.
    const servedAgainMs = Math.max(
      ...victimIds.map((id) => {
        const acks = sent
          .filter((s) => s.id === id && s.sentAt >= killedAt && s.ackAt !== undefined)
          .map((s) => s.ackAt! - killedAt);
        return acks.length === 0 ? Infinity : Math.min(...acks);
      }),
    );
    const acked = sent.filter((s) => s.ackAt !== undefined);
    const afterTakeover = acked.filter((s) => s.sentAt > killedAt + takeoverMs).length;
    console.info(
      `kill -9 of one of three nodes (lease ${leaseMs} ms): survivors owned all 64 partitions ${takeoverMs} ms after the kill; ` +
        `each of the victim's ${victimIds.length} accounts was served again within ${servedAgainMs} ms; ` +
        `${acked.length} of ${sent.length} deposits acknowledged, ${afterTakeover} after the take-over`,
    );
    expect(survivors.map((v) => v.nodeId)).toEqual(['k1', 'k2']);
    expect(takeoverMs).toBeLessThan(leaseMs * 3);
    expect(servedAgainMs).toBeLessThan(leaseMs * 3);
    expect(afterTakeover).toBeGreaterThan(0);
    for (const [index, view] of after.entries()) {
      expect(view.routing.servedLocally + view.routing.servedForOthers).toBeGreaterThan(
        survivors[index]!.routing.servedLocally + survivors[index]!.routing.servedForOthers,
      );
    }
    await expectNoLostUpdate(nc, client, prefix, ids, sent);
    client.close();
    await Promise.all(nodes.slice(0, 2).map((node) => node.stop()));
  }, 40_000);

  it('refuses to start a node whose partition count differs from the live nodes', async () => {
    const prefix = uniqueName('acount');
    const [first] = await startNodes(prefix, ['c1'], []);
    const other = spawnNode([
      'bank',
      '--nats',
      sharedNatsUrl(),
      '--prefix',
      prefix,
      '--partitions',
      '32',
    ]);
    expect((await other.exited).code).toBe(2);
    expect(other.stderr()).toMatch(
      /LEASE_CONFIG_CONFLICT: Node .* uses 32 partitions for domain bank, but live nodes use another count: c1 uses 64/,
    );
    await first!.stop();
  });

  it('refuses a forwarded command with a stale lease token; the forwarder then serves it itself, once', async () => {
    const prefix = uniqueName('astale');
    const [a] = await startNodes(
      prefix,
      ['a'],
      ['--lease-time', '1500', '--forward-timeout', '300'],
    );
    await waitForViews(nc, prefix, 1, (views) => stable(views, 1), 10_000, 'one node owning all');
    const alone = await leaseTable(nc, prefix);
    const [b] = await startNodes(
      prefix,
      ['b'],
      ['--lease-time', '1500', '--forward-timeout', '300'],
    );
    await waitForViews(nc, prefix, 2, (views) => stable(views, 2), 10_000, 'two-node split');
    const split = await leaseTable(nc, prefix);
    const moved = [...split].find(
      ([partition, lease]) => lease.owner === 'b' && alone.get(partition)?.owner === 'a',
    );
    expect(moved).toBeDefined();
    const [partition, current] = moved!;
    const stale = alone.get(partition)!.token;
    expect(stale).not.toBe(current.token);
    const id = idIn(partition, 'st');
    const client = createClient({ connection: nc, prefix, timeoutMs: 3_000 });
    await client.aggregate(Account, id, 'bank').open({ owner: id });
    const [, bBefore] = await nodeViews(nc, prefix, 2);

    const forward = (token: number, commandId: string) => {
      const h = headers();
      h.set(commandHeaders.forwardedSubject, `${prefix}.cmd.bank.Account.${id}.deposit`);
      h.set(commandHeaders.partitionToken, String(token));
      h.set(commandHeaders.commandId, commandId);
      return nc.request(forwardSubject(prefix, 'bank', partition), '{"amount":5}', {
        headers: h,
        timeout: 3_000,
      });
    };
    const refused = await forward(stale, 'stale-1');
    expect(refused.headers?.get('Jetactor-Status')).toBe('error');
    expect(refused.headers?.get('Jetactor-Error-Code')).toBe('NOT_PARTITION_OWNER');
    expect(refused.json<{ error: { message: string } }>().error.message).toContain(
      `under lease token ${stale}`,
    );
    const served = await forward(current.token, 'fresh-1');
    expect(served.headers?.get('Jetactor-Status')).toBe('ok');
    expect(served.json()).toMatchObject({ version: 2, response: { balance: 5 } });
    const stored = await storedCommandIds(nc, prefix, 'bank');
    expect(stored.get('stale-1')).toBeUndefined();
    expect(stored.get('fresh-1')).toBe(1);
    const [, bAfter] = await nodeViews(nc, prefix, 2);
    expect(bAfter!.routing.refusedForOthers - bBefore!.routing.refusedForOthers).toBe(1);
    expect(bAfter!.routing.servedForOthers - bBefore!.routing.servedForOthers).toBe(1);

    // A third member whose forwards come back refused (as from an owner whose lease moved on),
    // then unanswered, then unheard: each time the node that got the command serves it itself.
    const ghostConnection = await connectShared();
    const ghost = new PartitionLeases({
      connection: ghostConnection,
      domain: 'bank',
      prefix,
      nodeId: 'ghost',
      leaseMs: 1_500,
      logger: pino({ level: 'silent' }),
    });
    await ghost.start();
    await waitForViews(
      nc,
      prefix,
      2,
      (views) => sum(views, (v) => v.routing.owned) === 43,
      10_000,
      'the ghost taking its share',
    );
    const ghostIds = ghost
      .owned()
      .slice(0, 8)
      .map((p) => idIn(p, 'gh'));
    await Promise.all(
      ghostIds.map((gid) => client.aggregate(Account, gid, 'bank').open({ owner: gid })),
    );
    const received: string[] = [];
    const subscriptions: Subscription[] = [];
    const answer = (mode: 'refuse' | 'silent') => (error: Error | null, msg: Msg) => {
      if (error !== null) return;
      received.push(msg.headers?.get(commandHeaders.commandId) ?? '');
      if (mode === 'silent') return;
      const h = headers();
      h.set('Content-Type', 'application/json');
      h.set('Jetactor-Status', 'error');
      h.set('Jetactor-Error-Code', 'NOT_PARTITION_OWNER');
      msg.respond(JSON.stringify({ error: { code: 'NOT_PARTITION_OWNER' } }), { headers: h });
    };
    const listen = (mode: 'refuse' | 'silent') => {
      for (const sub of subscriptions.splice(0)) sub.unsubscribe();
      for (const p of ghost.owned()) {
        subscriptions.push(
          ghostConnection.subscribe(forwardSubject(prefix, 'bank', p), { callback: answer(mode) }),
        );
      }
      return ghostConnection.flush();
    };
    const fallbacksBefore = (await nodeViews(nc, prefix, 2)).map((v) => v.routing.fallbacks);
    const send = async (round: string) => {
      const replies = await Promise.all(
        ghostIds.map((gid, n) =>
          client
            .aggregate(Account, gid, 'bank')
            .deposit({ amount: 1 }, { commandId: `${round}-${n}` }),
        ),
      );
      expect(replies.every((r) => !r.duplicate)).toBe(true);
    };
    await listen('refuse');
    await send('refused');
    await listen('silent');
    await send('silent');
    for (const sub of subscriptions.splice(0)) sub.unsubscribe();
    await ghostConnection.flush();
    await send('unheard');

    const fallbacks = (await nodeViews(nc, prefix, 2)).map((v) => v.routing.fallbacks);
    const delta = (reason: keyof RoutingStats['fallbacks']) =>
      fallbacks.reduce((total, f, i) => total + f[reason] - fallbacksBefore[i]![reason], 0);
    expect(delta('refused')).toBe(ghostIds.length);
    expect(delta('timeout')).toBe(ghostIds.length);
    expect(delta('noResponders')).toBe(ghostIds.length);
    // Forwarded once each, never twice.
    expect(received.sort()).toEqual(
      [...ghostIds.map((_, n) => `refused-${n}`), ...ghostIds.map((_, n) => `silent-${n}`)].sort(),
    );
    const after = await storedCommandIds(nc, prefix, 'bank');
    for (const round of ['refused', 'silent', 'unheard']) {
      for (let n = 0; n < ghostIds.length; n++) expect(after.get(`${round}-${n}`)).toBe(1);
    }
    await ghost.stop();
    await ghostConnection.close();
    client.close();
    await Promise.all([a!.stop(), b!.stop()]);
  }, 40_000);
});

describe('a command router with affinity, in process', () => {
  const silent = pino({ level: 'silent' });
  const connections: NatsConnection[] = [];
  const stops: (() => Promise<unknown>)[] = [];

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    await Promise.all(connections.map((c) => c.close()));
  });

  async function nodeWithRouter(prefix: string, nodeId: string, forwardTimeoutMs?: number) {
    const connection = await connectShared();
    connections.push(connection);
    const store = await JetStreamEventStore.open({ connection, prefix, logger: silent });
    const node = createNode({ domains: [bank], store, logger: silent });
    await node.start();
    const router = new CommandRouter({
      node,
      connection,
      prefix,
      logger: silent,
      affinity: {
        nodeId,
        leaseMs: 1_500,
        ...(forwardTimeoutMs === undefined ? {} : { forwardTimeoutMs }),
      },
    });
    await router.start();
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await router.stop(2_000);
      await node.stop(2_000);
      await store.close();
      await router.settled();
    };
    stops.push(stop);
    return { node, router, stop };
  }

  async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    const start = Date.now();
    while (!condition()) {
      if (Date.now() - start > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  it('passivates the actors of the partitions it hands over, and shows its routing in node.stats()', async () => {
    const prefix = uniqueName('ain');
    const nc = await connectShared();
    connections.push(nc);
    const a = await nodeWithRouter(prefix, 'a');
    await until(() => a.node.stats().routing?.bank?.owned === 64, 'a owning every partition');
    expect(a.router.nodeId).toBe('a');
    const client = createClient({ connection: nc, prefix, domains: [bank] });
    const ids = Array.from({ length: 40 }, (_, i) => `in-${i}`);
    await Promise.all(ids.map((id) => client.aggregate(Account, id).open({ owner: id })));
    expect(a.node.stats()).toMatchObject({
      active: 40,
      conflicts: 0,
      routing: {
        bank: { nodeId: 'a', partitions: 64, owned: 64, servedLocally: 40, forwarded: 0 },
      },
    });

    const b = await nodeWithRouter(prefix, 'b');
    await until(
      () =>
        a.node.stats().routing?.bank?.owned === 32 && b.node.stats().routing?.bank?.owned === 32,
      'a fair split',
    );
    const owners = await leaseTable(nc, prefix);
    const keptByA = ids.filter((id) => owners.get(partitionOf('Account', id))?.owner === 'a');
    await until(
      () => a.node.stats().active === keptByA.length,
      'the handed-over actors passivated',
    );
    expect(a.node.stats().passivated).toBe(ids.length - keptByA.length);

    await Promise.all(ids.map((id) => client.aggregate(Account, id).deposit({ amount: 2 })));
    const [sa, sb] = [a.node.stats(), b.node.stats()];
    // Whichever node got a command, its partition's owner executed it.
    expect(sa.active + sb.active).toBe(ids.length);
    expect(sa.routing?.bank?.servedForOthers ?? 0).toBe(sb.routing?.bank?.forwarded ?? 0);
    expect(sb.routing?.bank?.servedForOthers ?? 0).toBe(sa.routing?.bank?.forwarded ?? 0);
    expect(sa.conflicts + sb.conflicts).toBe(0);
    const views = await Promise.all(ids.map((id) => client.view(Account, id)));
    expect(views.every((v) => (v.context as { balance: number }).balance === 2)).toBe(true);

    // Stopping hands b's partitions back to a at once.
    await b.stop();
    await until(() => a.node.stats().routing?.bank?.owned === 64, 'a owning every partition again');
    client.close();
  });

  it('forwards a command with a Jetactor-Timeout no longer than its forward timeout, so the owner does not start it once the forwarder serves it itself', async () => {
    const prefix = uniqueName('afwd');
    const nc = await connectShared();
    connections.push(nc);
    const a = await nodeWithRouter(prefix, 'a', 700);
    await until(() => a.node.stats().routing?.bank?.owned === 64, 'a owning every partition');
    const b = await nodeWithRouter(prefix, 'b', 700);
    await until(
      () =>
        a.node.stats().routing?.bank?.owned === 32 && b.node.stats().routing?.bank?.owned === 32,
      'a fair split',
    );
    // A copy of every forwarded request, as the owners get them.
    const seen: { commandId: string; timeout: string }[] = [];
    const sub = nc.subscribe(`${prefix}.fwd.bank.>`, {
      callback: (_, msg) => {
        seen.push({
          commandId: msg.headers?.get(commandHeaders.commandId) ?? '',
          timeout: msg.headers?.get(commandHeaders.timeout) ?? '',
        });
      },
    });
    await nc.flush();
    const client = createClient({ connection: nc, prefix, domains: [bank], timeoutMs: 3_000 });
    const ids = Array.from({ length: 40 }, (_, i) => `fw-${i}`);
    await Promise.all(
      ids.map((id) => client.aggregate(Account, id).open({ owner: id }, { commandId: `o-${id}` })),
    );
    // Without a timeout of its own (as `nats req` sends it).
    await Promise.all(
      ids.map((id) =>
        nc.request(`${prefix}.cmd.bank.Account.${id}.deposit`, '{"amount":1}', {
          timeout: 3_000,
          headers: (() => {
            const h = headers();
            h.set(commandHeaders.commandId, `d-${id}`);
            return h;
          })(),
        }),
      ),
    );
    await nc.flush();
    sub.unsubscribe();
    const opens = seen.filter((s) => s.commandId.startsWith('o-'));
    const deposits = seen.filter((s) => s.commandId.startsWith('d-'));
    // Each node gets about half of the requests, and forwards those its peer owns.
    expect(opens.length).toBeGreaterThan(0);
    expect(deposits.length).toBeGreaterThan(0);
    for (const { timeout } of [...opens, ...deposits]) {
      expect(Number(timeout)).toBeGreaterThanOrEqual(1);
      expect(Number(timeout)).toBeLessThanOrEqual(700);
    }
    client.close();
    await b.stop();
    await a.stop();
  });

  it('checks its affinity options', async () => {
    const nc = await connectShared();
    connections.push(nc);
    const node = createNode({ domains: [bank], logger: silent });
    expect(() => new CommandRouter({ node, connection: nc, affinity: { partitions: 0 } })).toThrow(
      /affinity\.partitions/,
    );
    expect(() => new CommandRouter({ node, connection: nc, affinity: { nodeId: 'a.b' } })).toThrow(
      /nodeId: must be 1 to 64 letters/,
    );
    expect(new CommandRouter({ node, connection: nc, affinity: false }).nodeId).toBeUndefined();
    expect(new CommandRouter({ node, connection: nc, affinity: true }).nodeId).toMatch(/-\d+-/);
  });
});
