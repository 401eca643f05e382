import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createClient } from '../../runtime/index.js';
import { startNatsServer, uniqueName, type LocalNatsServer } from '../helpers/nats.js';
import { killAllNodes, type NodeProcess } from '../fixtures/node-process.js';
import {
  chaos,
  chaosScale,
  checkWorkload,
  nodesServeAgain,
  openAccounts,
  report,
  servedAgain,
  startBankClients,
  startFaultNode,
  totalConflicts,
  waitForTransfers,
  type BankClients,
} from '../fixtures/fault-workload.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const initial = 100;
const clientTimeoutMs = 1_000;

describe('faults of the nats-server under load', () => {
  let server: LocalNatsServer | undefined;
  let nc: NatsConnection | undefined;
  let clients: BankClients | undefined;

  afterEach(async () => {
    await clients?.kill();
    clients = undefined;
    await killAllNodes();
    await nc?.close();
    await server?.cleanup();
  });

  afterAll(async () => {
    await killAllNodes();
  });

  /**
   * Two nodes and three client processes on a server of their own; each round applies `fault`
   * to the server under load, then measures from the fault's end until every account was
   * served again and both nodes answered a command. Then checks the invariants.
   */
  async function serverFault(
    name: string,
    fault: (server: LocalNatsServer) => Promise<void>,
  ): Promise<void> {
    server = await startNatsServer();
    const url = server.url;
    nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const prefix = uniqueName('fsrv');
    const startNode = (nodeId: string): Promise<NodeProcess> =>
      startFaultNode({ natsUrl: url, prefix, nodeId });
    const nodes = await Promise.all([startNode('n1'), startNode('n2')]);
    const client = createClient({ connection: nc, prefix, timeoutMs: 5_000, retries: 5 });
    const accounts = await openAccounts(client, 'a', 40, initial);
    clients = await startBankClients({
      servers: [url],
      prefix,
      accounts,
      timeoutMs: clientTimeoutMs,
    });
    const rounds = chaos ? chaosScale : 1;
    const figures: { accountsMs: number; nodesMs: number }[] = [];
    for (let round = 0; round < rounds; round++) {
      await sleep(1_500);
      await fault(server);
      const endedAt = Date.now();

      const serving = await nodesServeAgain(nc, prefix, ['n1', 'n2'], 20_000);
      let accountsMs: number | undefined;
      while (accountsMs === undefined) {
        accountsMs = servedAgain(await clients.replies(), endedAt, accounts).allAccountsMs;
        if (Date.now() - endedAt > 20_000) throw new Error('not every account was served again');
        await sleep(50);
      }
      figures.push({ accountsMs, nodesMs: Math.max(...Object.values(serving)) });
      for (const node of nodes) expect(node.child.exitCode, node.stderr()).toBeNull();
    }
    await sleep(1_000);
    const { replies, summaries } = await clients.stop();
    clients = undefined;
    if (process.env.FAULTS_DEBUG)
      for (const n of nodes)
        console.info(
          n
            .logs()
            .filter((l) => (l.level as number) >= 40)
            .map((l) => JSON.stringify(l).slice(0, 700))
            .join('\n'),
        );
    const transfersEndMs = await waitForTransfers(nc, prefix, 60_000);
    const conflicts = await totalConflicts(nc, prefix, 2);
    const checked = await checkWorkload({ nc, prefix, accounts, initial, replies, client });
    expect(checked.acknowledged).toBeGreaterThan(100);
    expect(checked.errorReplies, 'the fault was felt by the clients').toBeGreaterThan(0);
    report(name, {
      rounds,
      everyAccountServedAgainMs: Math.max(...figures.map((f) => f.accountsMs)),
      bothNodesServeMs: Math.max(...figures.map((f) => f.nodesMs)),
      transfersEndMs,
      ...checked,
      conflicts,
      clients: summaries.map((s) => `${s.name}:${s.ok}/${s.replies}`).join(' '),
    });
    client.close();
    await Promise.all(nodes.map((node) => node.stop()));
  }

  it(
    'keeps every acknowledged command, exactly once, across kill -9 and restart of the nats-server under load; nodes and clients reconnect and serve again',
    () =>
      serverFault('kill -9 and restart of nats-server', async (s) => {
        await s.kill();
        await sleep(500);
        await s.restart();
      }),
    120_000 * chaosScale,
  );

  it(
    'keeps every acknowledged command, exactly once, when the nats-server is paused longer than the client timeouts, then resumed',
    () =>
      serverFault(
        `nats-server paused ${3 * clientTimeoutMs} ms (SIGSTOP), then resumed`,
        async (s) => {
          await s.pause();
          await sleep(3 * clientTimeoutMs);
          await s.resume();
        },
      ),
    120_000 * chaosScale,
  );
});
