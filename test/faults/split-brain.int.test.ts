import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { createClient } from '../../runtime/index.js';
import { uniqueName } from '../helpers/nats.js';
import type { NodeProcess } from '../fixtures/node-process.js';
import {
  chaos,
  chaosScale,
  checkWorkload,
  commandStats,
  nodesServeAgain,
  openAccounts,
  report,
  servedAgain,
  startBankClients,
  startFaultNode,
  useFaultServer,
  waitForTransfers,
} from '../fixtures/fault-workload.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const leaseMs = 1_000;
const initial = 100;

/** Partitions each node owns now, by node id. */
async function owned(nc: NatsConnection, prefix: string, nodes: number) {
  const stats = await commandStats(nc, prefix, nodes);
  return Object.fromEntries([...stats].map(([id, s]) => [id, Number(s.routing.owned ?? 0)]));
}

async function until(
  what: string,
  timeoutMs: number,
  condition: () => Promise<boolean>,
): Promise<number> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what} not within ${timeoutMs} ms`);
    await sleep(50);
  }
  return Date.now() - start;
}

describe('two nodes on the same partitions', () => {
  const suite = useFaultServer();

  it(
    'fences the in-flight work of a node paused past its lease (SIGSTOP) while another took its partitions: nothing lost or doubled, and it serves again after SIGCONT',
    async () => {
      const { server, nc } = suite;
      const prefix = uniqueName('fsplit');
      const startNode = (nodeId: string): Promise<NodeProcess> =>
        startFaultNode({ natsUrl: server.url, prefix, nodeId, leaseMs });
      const nodes = { n1: await startNode('n1'), n2: await startNode('n2') };
      await until('a fair split', 10_000, async () => {
        const split = await owned(nc, prefix, 2);
        return split.n1 === 32 && split.n2 === 32;
      });
      const client = createClient({ connection: nc, prefix, timeoutMs: 5_000 });
      const accounts = await openAccounts(client, 'a', 40, initial);
      const clients = await startBankClients({ servers: [server.url], prefix, accounts });
      suite.clients = clients;
      const rounds = chaos ? chaosScale : 1;
      const figures: Record<string, number>[] = [];
      for (let round = 0; round < rounds; round++) {
        await sleep(1_500);
        const before = (await commandStats(nc, prefix, 2)).get('n2')!;
        nodes.n2.signal('SIGSTOP');
        const stoppedAt = Date.now();
        const takeoverMs = await until('n1 owning every partition', leaseMs * 5, async () => {
          return (await owned(nc, prefix, 1)).n1 === 64;
        });
        await sleep(Math.max(0, leaseMs * 3 - (Date.now() - stoppedAt)));
        nodes.n2.signal('SIGCONT');
        const resumedAt = Date.now();
        const serving = await nodesServeAgain(nc, prefix, ['n1', 'n2'], 15_000);
        const splitMs = await until('a fair split again', 15_000, async () => {
          const split = await owned(nc, prefix, 2);
          return split.n1 === 32 && split.n2 === 32;
        });
        let accountsMs: number | undefined;
        while (accountsMs === undefined) {
          accountsMs = servedAgain(await clients.replies(), resumedAt, accounts).allAccountsMs;
          if (Date.now() - resumedAt > 15_000) throw new Error('not every account served again');
          await sleep(50);
        }
        const after = (await commandStats(nc, prefix, 2)).get('n2')!;
        figures.push({
          pausedMs: resumedAt - stoppedAt,
          takeoverMs,
          n2ServesAgainMs: serving.n2!,
          fairSplitAgainMs: splitMs,
          everyAccountServedAgainMs: accountsMs,
          n2ConflictsAfterResume: after.conflicts - before.conflicts,
          n2LeaseLosses: Number(after.routing.losses ?? 0) - Number(before.routing.losses ?? 0),
        });
        expect(after.routing.losses, 'the paused node noticed it lost its leases').toBeGreaterThan(
          Number(before.routing.losses ?? 0),
        );
      }
      await sleep(1_000);
      const { replies, summaries } = await clients.stop();
      suite.clients = undefined;
      const transfersEndMs = await waitForTransfers(nc, prefix, 20_000);
      const checked = await checkWorkload({ nc, prefix, accounts, initial, replies, client });
      expect(checked.acknowledged).toBeGreaterThan(100);
      report('a node paused (SIGSTOP) past its lease, then resumed', {
        rounds,
        ...Object.fromEntries(
          Object.keys(figures[0]!).map((key) => [key, Math.max(...figures.map((f) => f[key]!))]),
        ),
        transfersEndMs,
        ...checked,
        clients: summaries.map((s) => `${s.name}:${s.ok}/${s.replies}`).join(' '),
      });
      for (const f of figures) expect(f.takeoverMs).toBeLessThan(leaseMs * 3);
      client.close();
      await Promise.all([nodes.n1.stop(), nodes.n2.stop()]);
    },
    60_000 * chaosScale,
  );
});
