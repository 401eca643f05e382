import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account } from '../../domains/bank/index.js';
import {
  JetStreamEventStore,
  createNode,
  defineDomain,
  reactorConsumerName,
  streamName,
  type DomainNode,
} from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { checkRuns, type RunRecord } from '../fixtures/reactor-runs.js';
import { readEvents, silentLogger } from '../fixtures/test-support.js';

const domainModule = fileURLToPath(new URL('../fixtures/lease-domain.js', import.meta.url));
const LEASE_MS = 1_500;
const ACK_WAIT_MS = 1_500;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

describe('a reactor on two node processes', () => {
  let nc: NatsConnection;
  let writer: DomainNode | undefined;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    await writer?.stop(1_000).catch(() => undefined);
    await killAllNodes();
    await nc.close();
  });

  it('moves to the standby within lease time + ack wait when its node is killed, losing nothing and keeping each aggregate in order', async () => {
    const prefix = uniqueName('rxk');
    const subject = `${prefix}.test.runs`;
    const log: RunRecord[] = [];
    const decoder = new TextDecoder();
    nc.subscribe(subject, {
      callback: (_error, msg) => {
        log.push(JSON.parse(decoder.decode(msg.data)) as RunRecord);
      },
    });
    await nc.flush();
    const start = (host: string) =>
      startNodeProcess({
        natsUrl: sharedNatsUrl(),
        prefix,
        domains: [domainModule],
        args: [
          ...['--partitions', '0', '--lease-time', String(LEASE_MS)],
          ...['--reactor-ack-wait', String(ACK_WAIT_MS)],
        ],
        env: { RUNS_HOST: host, RUNS_NATS: sharedNatsUrl(), RUNS_SUBJECT: subject },
      });
    const processes = new Map<string, NodeProcess>([
      ['n1', await start('n1')],
      ['n2', await start('n2')],
    ]);

    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const node = createNode({
      domains: [defineDomain({ name: 'bank', aggregates: [Account] })],
      store,
      logger: silentLogger,
    });
    writer = node;
    await node.start();
    const ids = Array.from({ length: 8 }, (_, i) => `k${i}`);
    await Promise.all(
      ids.flatMap((id) => [
        node.aggregate(Account, id).open({ owner: id }),
        node.aggregate(Account, `m-${id}`).open({ owner: 'mirror' }),
      ]),
    );
    const rounds = 24;
    const writing = (async () => {
      for (let amount = 1; amount <= rounds; amount++) {
        await Promise.all(ids.map((id) => node.aggregate(Account, id).deposit({ amount })));
        await sleep(60);
      }
    })();

    await waitFor(() => log.filter((r) => r.phase === 'end').length >= 30, 15_000, 'first runs');
    const leader = log[0]!.host;
    const standby = leader === 'n1' ? 'n2' : 'n1';
    expect(log.every((r) => r.host === leader)).toBe(true);
    const victim = processes.get(leader)!;
    victim.signal('SIGKILL');
    const killedAt = Date.now();
    expect((await victim.exited).signal).toBe('SIGKILL');

    await waitFor(() => log.some((r) => r.host === standby), 10_000, 'takeover');
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThan(LEASE_MS + ACK_WAIT_MS + 1_000);
    await writing;
    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => {
        const handled = checkRuns(log).handled;
        if (!ids.every((id) => new Set(handled.get(id)).size === rounds)) return false;
        const info = await jsm.consumers.info(
          streamName(prefix, 'bank'),
          reactorConsumerName(prefix, 'bank', 'serial'),
        );
        return info.num_pending === 0 && info.num_ack_pending === 0;
      },
      20_000,
      'every deposit mirrored',
    );
    expect((await processes.get(standby)!.stop()).code).toBe(0);

    // The killed node's runs in hand end where it died.
    const lastOfLeader = log.findLastIndex((r) => r.host === leader);
    const check = checkRuns(log, new Map([[leader, lastOfLeader + 1]]));
    expect(check.overlaps).toEqual([]);
    expect(check.outOfOrder).toEqual([]);
    expect(check.hostOverlaps).toEqual([]);
    const versions = Array.from({ length: rounds }, (_, i) => i + 2);
    for (const id of ids) {
      // At least once (what the killed node had handled and not acknowledged came again) …
      expect([...new Set(check.handled.get(id))], id).toEqual(versions);
      // … and exactly once in effect: one deposit on the mirror per source deposit.
      const mirror = await readEvents(store, {
        domain: 'bank',
        aggregate: 'Account',
        id: `m-${id}`,
      });
      expect(
        mirror.slice(1).map((e) => e.meta.commandId),
        `m-${id}`,
      ).toEqual(versions.map((v) => `serial:bank/Account/${id}@${v}:1`));
    }
    console.info(`reactor lease kill: takeover ${takeoverMs} ms after kill -9`);
  }, 60_000);
});
