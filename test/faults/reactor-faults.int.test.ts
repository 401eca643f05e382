import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { JetStreamDeadLetterStore, createClient } from '../../runtime/index.js';
import { reactorConsumerName, streamName } from '../../runtime/nats/subjects.js';
import { uniqueName } from '../helpers/nats.js';
import { storedCommits } from '../fixtures/stream-contents.js';
import {
  chaosScale,
  checkWorkload,
  openAccounts,
  report,
  startBankClients,
  startFaultNode,
  useFaultServer,
  waitForTransfers,
} from '../fixtures/fault-workload.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const initial = 100;
const slowMs = 40;
const poison = 13;

/** Events a reactor has not acknowledged yet: not delivered, or in hand. */
async function lag(nc: NatsConnection, prefix: string, reactor: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.consumers.info(
    streamName(prefix, 'bank'),
    reactorConsumerName(prefix, 'bank', reactor),
  );
  return info.num_pending + info.num_ack_pending;
}

describe('a slow and a failing reactor under load', () => {
  const suite = useFaultServer();

  it(
    'keeps serving commands while one reactor lags and another fails; each acts exactly once per event, the failing one dead-letters only its poison events',
    async () => {
      const { server, nc } = suite;
      const prefix = uniqueName('freact');
      const nodes = await Promise.all(
        ['n1', 'n2'].map((nodeId) =>
          startFaultNode({
            natsUrl: server.url,
            prefix,
            nodeId,
            forwardTimeoutMs: 1_000,
            env: {
              FAULT_REACTORS: 'slow,flaky',
              SLOW_REACTOR_MS: String(slowMs),
              FLAKY_POISON_AMOUNT: String(poison),
            },
          }),
        ),
      );
      const client = createClient({ connection: nc, prefix, timeoutMs: 5_000 });
      const accounts = await openAccounts(client, 'a', 20, initial);
      const clients = await startBankClients({ servers: [server.url], prefix, accounts });
      suite.clients = clients;
      await sleep(3_000 * chaosScale);
      const lagAtStop = await lag(nc, prefix, 'slow');
      const { replies, summaries } = await clients.stop();
      suite.clients = undefined;
      const stoppedAt = Date.now();
      const transfersEndMs = await waitForTransfers(nc, prefix, 20_000);
      let caughtUpMs: number | undefined;
      while (caughtUpMs === undefined) {
        const left = (await lag(nc, prefix, 'slow')) + (await lag(nc, prefix, 'flaky'));
        if (left === 0) caughtUpMs = Date.now() - stoppedAt;
        else if (Date.now() - stoppedAt > 60_000 * chaosScale) {
          throw new Error(`the reactors still had ${left} events to handle after 60 s`);
        }
        await sleep(100);
      }

      const checked = await checkWorkload({ nc, prefix, accounts, initial, replies, client });
      // While the slow reactor was behind, commands were answered as fast as usual.
      const latencies = replies
        .filter((r) => r.ok)
        .map((r) => r.at - r.sentAt)
        .sort((a, b) => a - b);
      const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? 0;
      expect(lagAtStop, 'the slow reactor was behind when the load stopped').toBeGreaterThan(0);
      expect(p99, 'command latency p99 (ms) while reactors lag and fail').toBeLessThan(1_000);

      // Each reactor acted exactly once per event it handled: the mirror accounts hold one
      // deposit per source deposit, under the id derived from the event, and nothing else.
      const commits = await storedCommits(nc, prefix, 'bank');
      const deposits = new Map<string, { version: number; amount: number }[]>();
      const mirrored = new Map<string, string[]>();
      const mirrorBalance = new Map<string, number>();
      for (const commit of commits) {
        if (commit.stream.aggregate !== 'Account') continue;
        for (const event of commit.events) {
          if (event.type !== 'Deposited') continue;
          const { amount } = event.data as { amount: number };
          const id = commit.stream.id;
          if (/^[mf]-/.test(id)) {
            mirrored.set(id, [...(mirrored.get(id) ?? []), event.meta.commandId]);
            mirrorBalance.set(id, (mirrorBalance.get(id) ?? 0) + amount);
          } else {
            deposits.set(id, [
              ...(deposits.get(id) ?? []),
              { version: event.meta.version, amount },
            ]);
          }
        }
      }
      let poisoned = 0;
      for (const id of accounts) {
        const source = deposits.get(id) ?? [];
        const sum = (list: typeof source) => list.reduce((total, d) => total + d.amount, 0);
        const handled = source.filter((d) => d.amount !== poison);
        poisoned += source.length - handled.length;
        // Sorted: order per aggregate is what test/reactors checks; here, that each event acted once.
        expect(mirrored.get(`m-${id}`)?.sort(), `m-${id}`).toEqual(
          source.map((d) => `slow:bank/Account/${id}@${d.version}:1`).sort(),
        );
        expect(mirrorBalance.get(`m-${id}`), `m-${id}`).toBe(sum(source));
        expect((mirrored.get(`f-${id}`) ?? []).sort(), `f-${id}`).toEqual(
          handled.map((d) => `flaky:bank/Account/${id}@${d.version}:1`).sort(),
        );
        expect(mirrorBalance.get(`f-${id}`) ?? 0, `f-${id}`).toBe(sum(handled));
      }
      const letters = await new JetStreamDeadLetterStore({ connection: nc, prefix }).list();
      expect(letters.map((l) => l.reactor)).toEqual(Array<string>(poisoned).fill('flaky'));
      expect(letters.every((l) => l.attempts === 3 && /never handled/.test(l.error.message))).toBe(
        true,
      );
      // The retried first tries of the flaky reactor: one in three of its handled deposits.
      const retriedAfterSending = [...deposits.values()]
        .flat()
        .filter((d) => d.amount !== poison && d.version % 3 === 0).length;
      report('a slow and a failing reactor', {
        slowReactorMsPerEvent: slowMs,
        slowReactorLagAtStop: lagAtStop,
        reactorsCaughtUpMs: caughtUpMs,
        transfersEndMs,
        commandLatencyMs: {
          p50: latencies[Math.floor(latencies.length / 2)],
          p99,
          max: latencies.at(-1),
        },
        deadLetters: letters.length,
        flakyRetriedAfterSending: retriedAfterSending,
        ...checked,
        clients: summaries.map((s) => `${s.name}:${s.ok}/${s.replies}`).join(' '),
      });
      expect(retriedAfterSending).toBeGreaterThan(0);
      for (const node of nodes) expect(node.child.exitCode, node.stderr()).toBeNull();
      client.close();
      await Promise.all(nodes.map((node) => node.stop()));
    },
    90_000 * chaosScale,
  );
});
