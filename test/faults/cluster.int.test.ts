import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JetStreamEventStore, createClient } from '../../runtime/index.js';
import type { LocalNatsServer } from '../../runtime/nats/local-nats-server.js';
import {
  deadLetterStream,
  leaseBucket,
  projectionLeaseBucket,
  snapshotBucket,
  streamName,
} from '../../runtime/nats/subjects.js';
import { startNatsCluster, uniqueName, type LocalNatsCluster } from '../helpers/nats.js';
import { killAllNodes, type NodeProcess } from '../fixtures/node-process.js';
import { expectReplicasRefused } from '../fixtures/test-support.js';
import {
  chaos,
  chaosScale,
  checkWorkload,
  commandStats,
  openAccounts,
  report,
  servedAgain,
  startBankClients,
  startFaultNode,
  waitForTransfers,
  type BankClients,
  type Reply,
} from '../fixtures/fault-workload.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const initial = 100;
const leaseMs = 1_000;
/** How long a killed server stays down: longer than the client timeout (1 s) and the lease. */
const downMs = 3_000;
/**
 * How long after the restart every account must be served again: 3.7–5.4 s after the domain
 * stream's server came back in the last runs (2026-12-03), up to 23.5 s while reads were slower;
 * the others' servers, under 1 s.
 */
const servedAgainWithinMs = 30_000;

/**
 * What of the bank domain a server holds, as the leader (R1: the only copy) of each stream: the
 * domain's stream, the partition lease bucket, the lease bucket of reactors and projections (one
 * node runs each), the snapshot bucket, the dead letters.
 */
type Held = 'stream' | 'partitionLeases' | 'reactorLeases' | 'snapshots' | 'deadLetters';

/** What happened while one server was down, and after it came back. */
interface Outage {
  server: string;
  held: Held[];
  /** When it was killed and restarted, and when every account was served again (ms since epoch). */
  window: string;
  /** Node and client processes connected to it when it was killed (they reconnect elsewhere). */
  nodesConnected: number;
  clientsConnected: number;
  /** Commands acknowledged in the second before the kill. */
  acknowledgedPerSecondBefore: number;
  downMs: number;
  /** Tries sent while the server was down, answered before it restarted: */
  /** acknowledged as new (stored then), */
  newAcknowledged: number;
  /** answered as duplicates of a command acknowledged before, */
  duplicatesAnswered: number;
  /** and errors, by code. */
  errors: number;
  errorCodes: Record<string, number>;
  /** Codes of those errors that are not retryable (refusals such as INSUFFICIENT_FUNDS). */
  definiteErrorCodes: string[];
  /** Of the workload's accounts, how many had a command acknowledged as new while it was down. */
  accountsServedWhileDown: number;
  /** From the kill until every account had a command acknowledged (if it happened before the restart). */
  everyAccountServedAfterKillMs: number | undefined;
  /** From the restart until every account had a command acknowledged. */
  everyAccountServedAfterRestartMs: number;
  /** Summed over the nodes, from the kill until every account was served again: partitions lost, */
  leaseLosses: number;
  /** lease renewals failed, */
  leaseRenewFailures: number;
  /** and appends refused because another node had written the aggregate first. */
  conflicts: number;
  /** Partitions each node owned once every account was served again. */
  ownedAfter: Record<string, number>;
}

async function leaderOf(jsm: JetStreamManager, stream: string): Promise<string | undefined> {
  try {
    return (await jsm.streams.info(stream)).cluster?.leader;
  } catch {
    // Not made yet (snapshots and dead letters are made on first use), or its server is down.
    return undefined;
  }
}

describe('a 3-server JetStream cluster with R1 streams, one server killed at a time', () => {
  let cluster: LocalNatsCluster;
  let nc: NatsConnection;
  let clients: BankClients | undefined;

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 });
    nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  });

  afterAll(async () => {
    await clients?.kill();
    await killAllNodes();
    await nc?.close();
    await cluster?.cleanup();
  });

  it('refuses replicas: 3 on nats-server 2.9.10, even on a cluster that could place them', async () => {
    await expectReplicasRefused(nc, uniqueName('frep'));
  });

  it(
    'kill -9 of each server in turn under load: the domain stream’s server down fails commands retryably and stores nothing, the others leave commands served; nothing acknowledged is lost or doubled',
    async () => {
      const prefix = uniqueName('fclus');
      const startNode = (nodeId: string): Promise<NodeProcess> =>
        startFaultNode({ natsUrl: cluster.urls.join(','), prefix, nodeId, leaseMs });
      // The domain's stream first: on a cluster just started, on a loaded machine, the first
      // JetStream requests can outlast their 5 s timeout, and a node that cannot read its stream
      // at start exits (STORE_UNAVAILABLE).
      for (let attempt = 1; ; attempt++) {
        const store = await JetStreamEventStore.open({ connection: nc, prefix });
        const created = await store.ensureDomains(['bank']).then(
          () => true,
          (error: unknown) => {
            if (attempt >= 3) throw error;
            return false;
          },
        );
        await store.close();
        if (created) break;
      }
      const nodes = [await startNode('n1'), await startNode('n2')];
      const client = createClient({ connection: nc, prefix, timeoutMs: 5_000, retries: 5 });
      const accounts = await openAccounts(client, 'a', 30, initial);
      clients = await startBankClients({ servers: cluster.urls, prefix, accounts });
      const jsm = await jetstreamManager(nc);

      const held = async (server: string): Promise<Held[]> => {
        const streams: [Held, string][] = [
          ['stream', streamName(prefix, 'bank')],
          ['partitionLeases', `KV_${leaseBucket(prefix, 'bank')}`],
          ['reactorLeases', `KV_${projectionLeaseBucket(prefix)}`],
          ['snapshots', `KV_${snapshotBucket(prefix, 'bank')}`],
          ['deadLetters', deadLetterStream(prefix)],
        ];
        const leaders = await Promise.all(streams.map(([, name]) => leaderOf(jsm, name)));
        return streams.filter((_, i) => leaders[i] === server).map(([what]) => what);
      };
      const leaseCounters = async () => {
        let losses = 0;
        let renewFailures = 0;
        let conflicts = 0;
        const owned: Record<string, number> = {};
        for (const [id, s] of await commandStats(nc, prefix, nodes.length)) {
          conflicts += s.conflicts;
          losses += Number(s.routing.losses ?? 0);
          renewFailures += Number(s.routing.renewFailures ?? 0);
          owned[id] = Number(s.routing.owned ?? 0);
        }
        return { losses, renewFailures, conflicts, owned };
      };

      /** With FAULTS_DEBUG: the nodes' warnings and errors since `since`, how many and when first. */
      const printNodeWarnings = (since: number) => {
        if (!process.env.FAULTS_DEBUG) return;
        const seen = new Map<string, { count: number; firstMs: number }>();
        for (const n of nodes) {
          for (const l of n.logs()) {
            const ms = (l.time as number) - since;
            if (ms < 0 || (l.level as number) < 40) continue;
            // The first of each in full: its error and where it came from.
            if (!seen.has(String(l.msg))) console.info(JSON.stringify(l).slice(0, 1500));
            const entry = seen.get(String(l.msg)) ?? { count: 0, firstMs: ms };
            entry.count += 1;
            seen.set(String(l.msg), entry);
          }
        }
        console.info(JSON.stringify(Object.fromEntries(seen)));
      };

      /**
       * Kills `server` with SIGKILL under load, keeps it down for `downMs`, restarts it on its
       * store and waits until every account was served again.
       */
      const outage = async (server: LocalNatsServer): Promise<Outage> => {
        const what = await held(server.serverName);
        const connz = (await (await fetch(`${server.monitorUrl}/connz`)).json()) as {
          connections?: { name?: string }[];
        };
        const names = (connz.connections ?? []).map((c) => c.name ?? '');
        const before = await leaseCounters();
        const loadAt = Date.now();
        const beforeKill = await clients!.replies();
        await server.kill();
        const killedAt = Date.now();
        await sleep(downMs);
        const restartAt = Date.now();
        await server.restart();
        await cluster.waitForMetaLeader(15_000);
        let afterRestartMs: number | undefined;
        while (afterRestartMs === undefined) {
          afterRestartMs = servedAgain(await clients!.replies(), restartAt, accounts).allAccountsMs;
          if (Date.now() - restartAt > servedAgainWithinMs) {
            const since = (await clients!.replies()).filter((r) => r.sentAt >= restartAt);
            const served = new Set(since.filter((r) => r.ok).map((r) => r.account));
            const unserved = accounts.filter((id) => !served.has(id));
            const got = unserved.map((id) => {
              const codes = since.filter((r) => r.account === id).map((r) => r.code ?? '?');
              return `${id}: ${codes.length} replies ${[...new Set(codes)].join('/')}`;
            });
            printNodeWarnings(killedAt);
            throw new Error(
              `not every account was served again within ${servedAgainWithinMs} ms after ${server.serverName} (holding ${what.join(', ') || 'nothing'}) restarted: ${got.join('; ')}`,
            );
          }
          await sleep(50);
        }
        const replies = await clients!.replies();
        const down = replies.filter((r) => r.sentAt >= killedAt && r.at < restartAt);
        const isNew = (r: Reply) => r.ok && r.duplicate !== true;
        const errorCodes: Record<string, number> = {};
        const definite = new Set<string>();
        for (const r of down.filter((r) => !r.ok)) {
          errorCodes[r.code ?? '?'] = (errorCodes[r.code ?? '?'] ?? 0) + 1;
          if (r.retryable !== true) definite.add(r.code ?? '?');
        }
        const workload = new Set(accounts);
        const after = await leaseCounters();
        if (process.env.FAULTS_DEBUG) {
          // Acknowledged per client and errors, per 250 ms from a second before the kill.
          const line: string[] = [];
          for (let t = killedAt - 1_000; t < restartAt + afterRestartMs; t += 250) {
            const at = replies.filter((r) => r.at >= t && r.at < t + 250);
            const per = ['c1', 'c2', 'c3'].map((c) => at.filter((r) => r.c === c && r.ok).length);
            line.push(`${t - killedAt}:${per.join('/')} e${at.filter((r) => !r.ok).length}`);
          }
          console.info(server.serverName, what, line.join('  '));
          printNodeWarnings(killedAt);
        }
        return {
          server: server.serverName,
          held: what,
          nodesConnected: names.filter((n) => n.startsWith('jetactor node')).length,
          clientsConnected: names.filter((n) => n.startsWith('bank-client')).length,
          acknowledgedPerSecondBefore: beforeKill.filter(
            (r) => r.ok && r.at >= loadAt - 1_000 && r.at < loadAt,
          ).length,
          downMs: restartAt - killedAt,
          window: `killed ${killedAt}, restarted ${restartAt}, served again ${restartAt + afterRestartMs}`,
          newAcknowledged: down.filter(isNew).length,
          duplicatesAnswered: down.filter((r) => r.ok && r.duplicate === true).length,
          errors: down.filter((r) => !r.ok).length,
          errorCodes,
          definiteErrorCodes: [...definite],
          accountsServedWhileDown: new Set(
            down.filter((r) => isNew(r) && workload.has(r.account)).map((r) => r.account),
          ).size,
          everyAccountServedAfterKillMs: servedAgain(down.filter(isNew), killedAt, accounts)
            .allAccountsMs,
          everyAccountServedAfterRestartMs: afterRestartMs,
          leaseLosses: after.losses - before.losses,
          leaseRenewFailures: after.renewFailures - before.renewFailures,
          conflicts: after.conflicts - before.conflicts,
          ownedAfter: after.owned,
        };
      };

      const rounds = chaos ? chaosScale : 1;
      const outages: Outage[] = [];
      for (let round = 0; round < rounds; round++) {
        // Each server in turn, the one holding the domain's stream last.
        const streamServer = await leaderOf(jsm, streamName(prefix, 'bank'));
        const order = [...cluster.servers].sort(
          (a, b) => Number(a.serverName === streamServer) - Number(b.serverName === streamServer),
        );
        for (const server of order) {
          await sleep(1_500);
          const o = await outage(server);
          outages.push(o);
          const seen = JSON.stringify(o);
          for (const code of o.definiteErrorCodes) {
            expect(['INSUFFICIENT_FUNDS'], `${code} while a server was down: ${seen}`).toContain(
              code,
            );
          }
          if (o.held.includes('stream')) {
            // Nothing is stored while the stream is away (a resend may be answered from the
            // actor's memory of its recent commands), and every error says retry: even a refusal
            // needs the stream, to be decided on the state it holds.
            expect(o.newAcknowledged, seen).toBe(0);
            expect(o.errors, seen).toBeGreaterThan(0);
            expect(o.definiteErrorCodes, seen).toEqual([]);
          } else if (o.held.every((what) => what === 'deadLetters')) {
            // Clients and nodes connected to it moved to the other servers and went on.
            expect(o.everyAccountServedAfterKillMs, seen).toBeDefined();
            expect(o.everyAccountServedAfterKillMs!, seen).toBeLessThan(downMs);
          } else if (!o.held.includes('snapshots')) {
            // Without the partition leases, or the reactors' leases, commands go on (see
            // docs/guarantees.md);
            // without the snapshot bucket every new actor first waits for its snapshot read to
            // time out, and this workload nearly stops.
            expect(o.newAcknowledged, seen).toBeGreaterThan(0);
          }
          if (o.held.includes('partitionLeases')) {
            // No renewal can be acknowledged: the nodes give their partitions up after the lease
            // time and serve every command they get themselves.
            expect(o.leaseLosses, seen).toBeGreaterThan(0);
          }
        }
      }
      await sleep(1_000);
      const { replies, summaries } = await clients.stop();
      clients = undefined;
      const transfersEndMs = await waitForTransfers(nc, prefix, 30_000);
      const checked = await checkWorkload({ nc, prefix, accounts, initial, replies, client }).catch(
        (error: unknown) => {
          // When each server was down, to read the failure against.
          const when = outages.map((o) => `${o.server} (${o.held.join(', ')}) ${o.window}`);
          if (error instanceof Error) error.message += `\noutages: ${when.join('; ')}`;
          throw error;
        },
      );
      expect(checked.acknowledged).toBeGreaterThan(100);
      for (const node of nodes) expect(node.child.exitCode, node.stderr()).toBeNull();
      for (const o of outages) {
        const what = o.held.length === 0 ? 'nothing of the domain' : o.held.join(', ');
        report(`3-server cluster, R1, kill -9 of the server holding ${what}`, { ...o });
      }
      report('3-server cluster, R1, kill -9 of each server in turn (whole run)', {
        rounds,
        transfersEndMs,
        ...checked,
        clients: summaries.map((s) => `${s.name}:${s.ok}/${s.replies}`).join(' '),
      });
      client.close();
      await Promise.all(nodes.map((node) => node.stop()));
    },
    120_000 * chaosScale,
  );
});
