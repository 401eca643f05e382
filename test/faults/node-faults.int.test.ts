import { describe, expect, it } from 'vitest';
import { createClient, type JetactorClient } from '../../runtime/index.js';
import { uniqueName } from '../helpers/nats.js';
import type { NodeProcess } from '../fixtures/node-process.js';
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
  useFaultServer,
  waitForTransfers,
} from '../fixtures/fault-workload.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const leaseMs = 1_000;
const reactorAckWaitMs = 2_000;
const initial = 100;

describe('faults of a node under load', () => {
  const suite = useFaultServer();

  const startNode = (prefix: string, nodeId: string): Promise<NodeProcess> =>
    startFaultNode({
      natsUrl: suite.server.url,
      prefix,
      nodeId,
      leaseMs,
      reactorAckWaitMs,
      shutdownTimeoutMs: 3_000,
    });

  /**
   * Two nodes, three client processes; each round kills (or stops) node n2 under load, measures
   * until the clients are served again on every account and n1 serves, restarts n2 and measures
   * until both nodes serve. Then checks the invariants over everything the clients got.
   */
  async function nodeFault(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const { server, nc } = suite;
    const prefix = uniqueName(signal === 'SIGKILL' ? 'fkill' : 'fterm');
    const nodes = { n1: await startNode(prefix, 'n1'), n2: await startNode(prefix, 'n2') };
    const client: JetactorClient = createClient({ connection: nc, prefix, timeoutMs: 5_000 });
    const accounts = await openAccounts(client, 'a', 40, initial);
    const clients = await startBankClients({ servers: [server.url], prefix, accounts });
    suite.clients = clients;
    const rounds = chaos ? chaosScale : 1;
    const figures: { accountsMs: number; restartMs: number; exit: string }[] = [];
    for (let round = 0; round < rounds; round++) {
      await sleep(1_500);
      const victim = nodes.n2;
      victim.signal(signal);
      const exit = await victim.exited;
      if (signal === 'SIGKILL') expect(exit.signal).toBe('SIGKILL');
      else {
        expect(exit, victim.stderr()).toEqual({ code: 0, signal: null });
        expect(
          victim
            .logs()
            .map((l) => l.msg)
            .slice(-2),
        ).toEqual(['stopping', 'stopped']);
      }
      const faultAt = Date.now();
      await nodesServeAgain(nc, prefix, ['n1'], 10_000);
      // Every account is served again by the survivor: its partitions move to n1 within about
      // the lease time, and until then n1 serves the commands that no owner answers.
      let accountsMs: number | undefined;
      while (accountsMs === undefined) {
        accountsMs = servedAgain(await clients.replies(), faultAt, accounts).allAccountsMs;
        if (Date.now() - faultAt > 15_000) throw new Error('not every account was served again');
        await sleep(50);
      }
      const restartAt = Date.now();
      nodes.n2 = await startNode(prefix, 'n2');
      const startedMs = Date.now() - restartAt;
      const serving = await nodesServeAgain(nc, prefix, ['n1', 'n2'], 15_000);
      // From the restart to the first command n2 answered: process start, then serving.
      figures.push({
        accountsMs,
        restartMs: startedMs + serving.n2!,
        exit: String(exit.signal ?? exit.code),
      });
    }
    await sleep(1_000);
    const { replies, summaries } = await clients.stop();
    suite.clients = undefined;
    const transfersEndMs = await waitForTransfers(nc, prefix, 20_000);
    const conflicts = await totalConflicts(nc, prefix, 2);
    const checked = await checkWorkload({ nc, prefix, accounts, initial, replies, client });
    expect(checked.acknowledged).toBeGreaterThan(100);
    const worst = (pick: (f: (typeof figures)[number]) => number) => Math.max(...figures.map(pick));
    report(signal === 'SIGKILL' ? 'kill -9 of a node' : 'SIGTERM of a node', {
      rounds,
      everyAccountServedAgainMs: worst((f) => f.accountsMs),
      restartedNodeServesMs: worst((f) => f.restartMs),
      transfersEndMs,
      ...checked,
      conflicts,
      conflictRate: Number((conflicts / checked.acknowledged).toFixed(4)),
      clients: summaries.map((s) => `${s.name}:${s.ok}/${s.replies}`).join(' '),
    });
    expect(worst((f) => f.accountsMs)).toBeLessThan(leaseMs * 5);
    // A stopped node gives its reactor's events back at once; a killed one's come back after the
    // ack wait (1.5 times that when the restarted node is still waiting for them).
    expect(transfersEndMs).toBeLessThan(
      signal === 'SIGTERM' ? reactorAckWaitMs : reactorAckWaitMs * 1.5 + 3_000,
    );
    client.close();
    await Promise.all([nodes.n1.stop(), nodes.n2.stop()]);
  }

  it(
    'stores every acknowledged command exactly once and keeps the money when a node is killed -9 under load; both nodes serve again',
    () => nodeFault('SIGKILL'),
    60_000 * chaosScale,
  );

  it(
    'stores every acknowledged command exactly once and keeps the money when a node is stopped with SIGTERM under load; both nodes serve again',
    () => nodeFault('SIGTERM'),
    60_000 * chaosScale,
  );
});
