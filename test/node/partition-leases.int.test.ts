import { Writable } from 'node:stream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  PartitionLeases,
  TestClock,
  isConfigError,
  leaseBucket,
  type JetactorError,
  type PartitionLeasesOptions,
  type PartitionLost,
} from '../../runtime/index.js';
import {
  connectShared,
  startNatsServer,
  uniqueName,
  type LocalNatsServer,
} from '../helpers/nats.js';

const quiet: Logger = pino({ level: 'silent' });

/** Polls `condition` every 10 ms; resolves with the milliseconds it took, fails after `timeoutMs`. */
async function waitFor(
  condition: () => boolean,
  timeoutMs: number,
  what = 'condition',
): Promise<number> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - start;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Every partition owned by exactly one of `nodes`, each node at its fair share. */
function fairSplit(nodes: readonly PartitionLeases[], partitions: number): boolean {
  const owners = new Map<number, number>();
  for (const node of nodes) for (const p of node.owned()) owners.set(p, (owners.get(p) ?? 0) + 1);
  if (owners.size !== partitions || [...owners.values()].some((count) => count !== 1)) return false;
  const counts = nodes.map((node) => node.owned().length);
  return Math.max(...counts) - Math.min(...counts) <= 1;
}

/** Whether all `nodes` agree on the owner of every partition, and it is the node that owns it. */
function agreeOnOwners(nodes: readonly PartitionLeases[], partitions: number): boolean {
  for (let p = 0; p < partitions; p++) {
    const owner = nodes.find((node) => node.owns(p));
    if (owner === undefined) return false;
    for (const node of nodes) {
      if (node.ownerOf(p) !== owner.nodeId || node.tokenOf(p) !== owner.tokenOf(p)) return false;
    }
  }
  return true;
}

describe('partition leases', () => {
  let nc: NatsConnection;
  const running: PartitionLeases[] = [];
  const connections: NatsConnection[] = [];

  function leases(options: Partial<PartitionLeasesOptions> & { prefix: string }): PartitionLeases {
    const node = new PartitionLeases({ connection: nc, domain: 'bank', logger: quiet, ...options });
    running.push(node);
    return node;
  }

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((node) => node.stop()));
    await Promise.all(connections.splice(0).map((c) => c.close()));
  });

  afterAll(async () => {
    await nc.close();
  });

  it('lets one node take every partition', async () => {
    const prefix = uniqueName('pl');
    const acquired: number[] = [];
    const node = leases({ prefix, nodeId: 'solo', onAcquired: (e) => acquired.push(e.partition) });
    await node.start();
    const ms = await waitFor(() => node.owned().length === 64, 3_000, 'all 64 owned');
    expect(node.owned()).toEqual(Array.from({ length: 64 }, (_, p) => p));
    expect(acquired.sort((a, b) => a - b)).toEqual(node.owned());
    expect(node.liveNodes()).toEqual(['solo']);
    expect(node.ownerOf(5)).toBe('solo');
    expect(node.isCurrent(5, node.tokenOf(5)!)).toBe(true);
    expect(node.stats()).toMatchObject({ owned: 64, liveNodes: 1, acquisitions: 64, losses: 0 });
    expect(node.bucket).toBe(leaseBucket(prefix, 'bank'));
    console.info(`one node owned all 64 partitions ${ms} ms after start()`);
  });

  it('splits the partitions fairly between two and then three nodes', async () => {
    const prefix = uniqueName('pl');
    const a = leases({ prefix, nodeId: 'a', leaseMs: 1_500 });
    const b = leases({ prefix, nodeId: 'b', leaseMs: 1_500 });
    await Promise.all([a.start(), b.start()]);
    const two = await waitFor(() => fairSplit([a, b], 64), 5_000, 'two-node split');
    expect(a.owned()).toHaveLength(32);
    expect(b.owned()).toHaveLength(32);
    await waitFor(() => agreeOnOwners([a, b], 64), 2_000, 'agreement');

    const c = leases({ prefix, nodeId: 'c', leaseMs: 1_500 });
    const releasedBefore = a.stats().releases + b.stats().releases;
    const joinedAt = Date.now();
    await c.start();
    await waitFor(() => fairSplit([a, b, c], 64), 5_000, 'three-node split');
    const three = Date.now() - joinedAt;
    // The first node in sorted order takes the odd one: 22 + 21 + 21.
    expect([a, b, c].map((n) => n.owned().length)).toEqual([22, 21, 21]);
    // Only what c needed moved: 10 from a, 11 from b, nothing back and forth.
    expect(c.stats().acquisitions).toBe(21);
    expect(a.stats().releases + b.stats().releases - releasedBefore).toBe(21);
    await waitFor(() => agreeOnOwners([a, b, c], 64), 2_000, 'agreement');
    expect(c.liveNodes()).toEqual(['a', 'b', 'c']);
    console.info(
      `fair split: 2 nodes ${two} ms after start(), 3 nodes ${three} ms after the third one's start()`,
    );

    // Stable: nothing moves while membership stays the same.
    const before = [a, b, c].map((n) => n.stats().acquisitions + n.stats().releases);
    await sleep(1_500);
    expect([a, b, c].map((n) => n.stats().acquisitions + n.stats().releases)).toEqual(before);
    expect([a, b, c].map((n) => n.stats().losses)).toEqual([0, 0, 0]);
  });

  it('hands partitions over at once when a node stops', async () => {
    const prefix = uniqueName('pl');
    const a = leases({ prefix, nodeId: 'a', leaseMs: 5_000 });
    const b = leases({ prefix, nodeId: 'b', leaseMs: 5_000 });
    await Promise.all([a.start(), b.start()]);
    await waitFor(() => fairSplit([a, b], 64), 5_000, 'two-node split');
    const lost: PartitionLost[] = [];
    b.on('lost', (event) => lost.push(event));
    const stoppedAt = Date.now();
    await b.stop();
    expect(lost).toHaveLength(32);
    expect(lost.every((e) => e.reason === 'stopped')).toBe(true);
    expect(b.owned()).toEqual([]);
    const ms = await waitFor(() => a.owned().length === 64, 2_000, 'survivor owns all');
    // Far below the 5 s lease: the keys were deleted, not left to expire.
    expect(Date.now() - stoppedAt).toBeLessThan(2_000);
    expect(a.liveNodes()).toEqual(['a']);
    console.info(`graceful stop: survivor owned all 64 partitions ${ms} ms after stop() returned`);
  });

  it('refuses a stale fencing token', async () => {
    const prefix = uniqueName('pl');
    const a = leases({ prefix, nodeId: 'a', partitions: 4, leaseMs: 1_000 });
    await a.start();
    await waitFor(() => a.owned().length === 4, 3_000, 'a owns all');
    const old = a.tokenOf(2)!;
    expect(a.isCurrent(2, old)).toBe(true);
    expect(a.isCurrent(2, old + 1)).toBe(false);

    const b = leases({ prefix, nodeId: 'b', partitions: 4, leaseMs: 1_000 });
    await b.start();
    await waitFor(() => fairSplit([a, b], 4), 3_000, 'split');
    await a.stop();
    await waitFor(() => b.owned().length === 4, 3_000, 'b owns all');
    const fresh = b.tokenOf(2)!;
    expect(fresh).toBeGreaterThan(old);
    // A command forwarded with a's token (or b's own earlier one) is refused; the current one passes.
    expect(b.isCurrent(2, old)).toBe(false);
    expect(b.isCurrent(2, fresh)).toBe(true);
    expect(a.isCurrent(2, old)).toBe(false);

    // Renewals keep the token: it changes only with ownership.
    await sleep(b.leaseMs);
    expect(b.tokenOf(2)).toBe(fresh);
  });

  it('keeps a dead node’s partitions until their leases expire, then takes them over', async () => {
    const prefix = uniqueName('pl');
    const leaseMs = 1_500;
    const a = leases({ prefix, nodeId: 'a', leaseMs });
    const b = leases({ prefix, nodeId: 'b', leaseMs });
    const deadConnection = await connectShared({ name: 'doomed' });
    connections.push(deadConnection);
    const dead = leases({ prefix, nodeId: 'dead', leaseMs, connection: deadConnection });
    await Promise.all([a.start(), b.start(), dead.start()]);
    await waitFor(() => fairSplit([a, b, dead], 64), 5_000, 'split');
    await waitFor(() => agreeOnOwners([a, b, dead], 64), 2_000, 'agreement');
    const theirs = dead.owned();
    expect(theirs).toHaveLength(21);
    const takenAt = new Map<number, number>();
    for (const node of [a, b]) {
      node.on('acquired', ({ partition }) => takenAt.set(partition, Date.now()));
    }

    // The process "dies": its connection goes, nothing is released.
    const diedAt = Date.now();
    await deadConnection.close();

    await sleep(leaseMs / 3);
    expect(theirs.every((p) => a.ownerOf(p) === 'dead' && b.ownerOf(p) === 'dead')).toBe(true);
    expect(a.liveNodes()).toEqual(['a', 'b', 'dead']);

    await waitFor(() => fairSplit([a, b], 64), leaseMs + 1_500, 'takeover');
    const all = Date.now() - diedAt;
    const first = Math.min(...takenAt.values()) - diedAt;
    // Its last renewal was at most a third of a lease before it died, so nothing can move
    // before two thirds of a lease; all moved within about one lease.
    expect(first).toBeGreaterThanOrEqual((2 * leaseMs) / 3 - 50);
    expect(all).toBeLessThan(leaseMs + 1_000);
    // Only the dead node's partitions moved, each once.
    expect([...takenAt.keys()].sort((x, y) => x - y)).toEqual(theirs);
    expect(a.owned().length + b.owned().length).toBe(64);
    await waitFor(() => agreeOnOwners([a, b], 64), 2_000, 'agreement');
    expect(a.liveNodes()).toEqual(['a', 'b']);
    // The dead node, cut off, let its own leases go when their time was up.
    expect(dead.owned()).toEqual([]);
    expect(dead.stats().losses).toBe(21);
    console.info(
      `kill: first partition taken ${first} ms after the owner died, all ${all} ms after (lease ${leaseMs} ms)`,
    );
  });

  it('drops a lease at once when its time is up, before any timer or renewal (TestClock)', async () => {
    const prefix = uniqueName('pl');
    const clock = new TestClock(Date.now());
    const lost: PartitionLost[] = [];
    const node = leases({ prefix, nodeId: 'frozen', partitions: 8, leaseMs: 1_000, clock });
    node.on('lost', (event) => {
      lost.push(event);
      // Synchronous and first: the node already answers that it does not own it.
      expect(node.owns(event.partition)).toBe(false);
    });
    await node.start();
    await waitFor(() => node.owned().length === 8, 3_000, 'all owned');
    clock.advance(999);
    expect(node.owned()).toHaveLength(8);
    clock.advance(1);
    expect(node.owns(0)).toBe(false);
    expect(lost).toHaveLength(8);
    expect(lost.every((e) => e.reason === 'expired')).toBe(true);
    expect(node.stats()).toMatchObject({ owned: 0, losses: 8 });
  });

  it('rejects bad options and a bucket or partition count that disagrees', async () => {
    const bad = [
      { domain: 'no.dots' },
      { nodeId: 'has space' },
      { partitions: 0 },
      { leaseMs: 10 },
      { prefix: '1x' },
      { extra: true },
    ];
    for (const options of bad) {
      let caught: unknown;
      try {
        new PartitionLeases({ connection: nc, domain: 'bank', ...options });
      } catch (error) {
        caught = error;
      }
      expect(isConfigError(caught), JSON.stringify(options)).toBe(true);
      expect((caught as JetactorError).code).toBe('INVALID_OPTIONS');
    }

    const prefix = uniqueName('pl');
    const a = leases({ prefix, nodeId: 'a', leaseMs: 1_000, partitions: 16 });
    await a.start();
    const otherLease = leases({ prefix, nodeId: 'b', leaseMs: 2_000, partitions: 16 });
    await expect(otherLease.start()).rejects.toMatchObject({
      code: 'LEASE_CONFIG_CONFLICT',
      details: { conflicts: [{ field: 'ttl', expected: 2_000, actual: 1_000 }] },
    });
    const otherCount = leases({ prefix, nodeId: 'c', leaseMs: 1_000, partitions: 32 });
    await expect(otherCount.start()).rejects.toMatchObject({ code: 'LEASE_CONFIG_CONFLICT' });
    expect(otherCount.liveNodes()).toEqual([]);
    await sleep(50);
    expect(a.liveNodes()).toEqual(['a']);
  });

  it('logs only its lifecycle at info', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) {
          if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        }
        done();
      },
    });
    const prefix = uniqueName('pl');
    const node = leases({ prefix, nodeId: 'talky', logger: pino({ level: 'info' }, sink) });
    await node.start();
    await waitFor(() => node.owned().length === 64, 3_000, 'all owned');
    await node.stop();
    expect(lines.map((l) => l.msg)).toEqual([
      'partition leases started',
      'partition leases stopped',
    ]);
    expect(lines[1]).toMatchObject({ released: 64, node: 'talky', component: 'partition-leases' });
  });
});

describe('partition leases when the server stalls', () => {
  let server: LocalNatsServer;

  beforeAll(async () => {
    server = await startNatsServer();
  });

  afterAll(async () => {
    await server?.cleanup();
  });

  it('drops ownership as soon as a lease may have expired, then recovers', async () => {
    const leaseMs = 1_000;
    const prefix = uniqueName('pl');
    const connections = await Promise.all([1, 2].map(() => connect({ servers: server.url })));
    const [a, b] = connections.map(
      (connection, i) =>
        new PartitionLeases({
          connection,
          domain: 'bank',
          prefix,
          nodeId: `n${i}`,
          leaseMs,
          logger: quiet,
        }),
    ) as [PartitionLeases, PartitionLeases];
    const expired: { node: string; at: number }[] = [];
    for (const node of [a, b]) {
      node.on('lost', (e) => {
        if (e.reason === 'expired') expired.push({ node: node.nodeId, at: Date.now() });
      });
    }
    try {
      await Promise.all([a.start(), b.start()]);
      await waitFor(() => fairSplit([a, b], 64), 5_000, 'split');

      await server.pause();
      const pausedAt = Date.now();
      // Every renewal acknowledged before the pause was sent before it, so from pausedAt + leaseMs
      // on no lease may be believed in, whatever the timers do: owned() checks the clock.
      let believedTooLong = 0;
      while (Date.now() < pausedAt + 2 * leaseMs) {
        const now = Date.now();
        const owned = a.owned().length + b.owned().length;
        if (now >= pausedAt + leaseMs && owned > 0) believedTooLong += 1;
        await sleep(5);
      }
      expect(believedTooLong).toBe(0);
      expect(expired).toHaveLength(64);
      const latest = Math.max(...expired.map((e) => e.at)) - pausedAt;
      await server.resume();
      const resumedAt = Date.now();

      await waitFor(() => fairSplit([a, b], 64), 5 * leaseMs, 'split after resume');
      await waitFor(() => agreeOnOwners([a, b], 64), 2_000, 'agreement after resume');
      expect(a.stats().renewFailures + b.stats().renewFailures).toBeGreaterThan(0);
      console.info(
        `pause: leases dropped ${Math.min(...expired.map((e) => e.at)) - pausedAt}–${latest} ms after the server stopped (lease ${leaseMs} ms); fair split again ${Date.now() - resumedAt} ms after resume`,
      );
    } finally {
      if (server.paused) await server.resume();
      await Promise.all([a.stop(), b.stop()]);
      await Promise.all(connections.map((c) => c.close()));
    }
  });
});
