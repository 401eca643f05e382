import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, Transfer, bank } from '../../domains/bank/index.js';
import {
  createClient,
  reactorConsumerName,
  streamName,
  type Commit,
  type JetactorClient,
} from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { storedCommits } from '../fixtures/stream-contents.js';

const FUNDED = Array.from({ length: 12 }, (_, i) => `acc-${i}`);
const CLOSED = ['closed-0', 'closed-1'];
const GHOSTS = ['ghost-0', 'ghost-1']; // never opened
const START_BALANCE = 1_000;
const TRANSFERS = 240;
const FINAL = new Set(['Completed', 'Compensated', 'Failed']);

interface Planned {
  id: string;
  from: string;
  to: string;
  amount: number;
}

/** The same mix every run: mostly between funded accounts, some that must pay back or fail. */
function plan(): Planned[] {
  let seed = 42;
  const next = (n: number) => {
    // mulberry32: a small seeded generator, so every run plans the same transfers
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
  const pick = (list: string[]) => list[next(list.length)]!;
  return Array.from({ length: TRANSFERS }, (_, i) => {
    const from = pick(FUNDED);
    let to = pick(FUNDED.filter((id) => id !== from));
    let amount = 1 + next(300);
    const kind = i % 20;
    if (kind === 1 || kind === 2) to = pick(CLOSED); // paid back
    if (kind === 3 || kind === 4) to = pick(GHOSTS); // paid back
    if (kind === 5) return { id: `t-${i}`, from: pick(GHOSTS), to, amount }; // fails
    if (kind === 6) amount = 50_000; // more than anyone has: fails
    return { id: `t-${i}`, from, to, amount };
  });
}

/** Settled transfers (id → its last event's type), read from the stream. */
function outcomes(commits: Commit[]): Map<string, string> {
  const last = new Map<string, string>();
  for (const commit of commits) {
    if (commit.stream.aggregate !== 'Transfer') continue;
    const type = commit.events[commit.events.length - 1]?.type;
    if (type !== undefined) last.set(commit.stream.id, type);
  }
  return new Map([...last].filter(([, type]) => FINAL.has(type)));
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('transfers across a killed node', () => {
  let nc: NatsConnection;
  let client: JetactorClient | undefined;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    client?.close();
    await killAllNodes();
    await nc.close();
  });

  it('neither creates nor destroys money and applies no command twice when the node is killed mid-transfers', async () => {
    const prefix = uniqueName('xfer');
    // A short lease time and ack wait: the transfers reactor moves to the next node and gets
    // what the killed node held within about a second.
    // No partitions: the restarted node serves every command at once instead of waiting out
    // the dead node's leases (affinity is not what this test is about).
    const args = ['--reactor-ack-wait', '1000', '--lease-time', '1000', '--partitions', '0'];
    const start = () => startNodeProcess({ natsUrl: sharedNatsUrl(), prefix, args });
    const first: NodeProcess = await start();
    client = createClient({
      connection: nc,
      prefix,
      domains: [bank],
      timeoutMs: 2_000,
      retries: 12,
      maxBackoffMs: 500,
    });
    const c = client;
    await Promise.all(
      [...FUNDED, ...CLOSED].map((id) => c.aggregate(Account, id).open({ owner: id })),
    );
    await Promise.all(
      FUNDED.map((id) => c.aggregate(Account, id).deposit({ amount: START_BALANCE })),
    );
    await Promise.all(CLOSED.map((id) => c.aggregate(Account, id).close({})));
    const setup = (await storedCommits(nc, prefix, 'bank')).length;

    // Requests keep coming (16 at a time) while the node is killed and started again: the client
    // resends each one with its command id until a node answers.
    const planned = plan();
    let sent = 0;
    const requests = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (sent < planned.length) {
          const { id, from, to, amount } = planned[sent++]!;
          await c.aggregate(Transfer, id).request({ from, to, amount }, { commandId: `req-${id}` });
        }
      }),
    );
    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => (await jsm.streams.info(streamName(prefix, 'bank'))).state.messages > setup + 300,
      15_000,
      'transfers under way',
    );
    first.signal('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const atKill = outcomes(await storedCommits(nc, prefix, 'bank')).size;

    const second = await start();
    await requests;
    const consumer = reactorConsumerName(prefix, 'bank', 'transfers');
    await waitFor(
      async () => {
        if (outcomes(await storedCommits(nc, prefix, 'bank')).size < TRANSFERS) return false;
        const info = await jsm.consumers.info(streamName(prefix, 'bank'), consumer);
        return info.num_pending === 0 && info.num_ack_pending === 0;
      },
      20_000,
      'every transfer settled',
    );
    await second.stop();
    const commits = await storedCommits(nc, prefix, 'bank');

    // The kill interrupted transfers: some had not settled, some requests were still to come.
    expect(atKill).toBeLessThan(TRANSFERS);

    // No command applied twice: every command id is in exactly one commit.
    const seen = new Map<string, number>();
    for (const commit of commits) {
      for (const { id } of commit.commands) seen.set(id, (seen.get(id) ?? 0) + 1);
    }
    expect([...seen].filter(([, count]) => count > 1)).toEqual([]);

    // Money neither created nor destroyed: balances from the events, and every movement a
    // transfer made, by the transfer its command id names.
    const balances = new Map<string, number>();
    const moves = new Map<string, string[]>();
    for (const commit of commits) {
      if (commit.stream.aggregate !== 'Account') continue;
      for (const event of commit.events) {
        if (event.type !== 'Deposited' && event.type !== 'Withdrawn') continue;
        const { amount } = event.data as { amount: number };
        const signed = event.type === 'Deposited' ? amount : -amount;
        balances.set(commit.stream.id, (balances.get(commit.stream.id) ?? 0) + signed);
        const step = /^transfers:bank\/Transfer\/([^@]+)@(\d+):\d+$/.exec(event.meta.commandId);
        if (step === null) continue;
        const list = moves.get(step[1]!) ?? [];
        list.push(`${commit.stream.id} ${signed > 0 ? '+' : ''}${signed} @${step[2]}`);
        moves.set(step[1]!, list);
      }
    }
    const total = [...balances.values()].reduce((sum, b) => sum + b, 0);
    expect(total).toBe(FUNDED.length * START_BALANCE);
    for (const [id, balance] of balances) {
      expect(balance, id).toBeGreaterThanOrEqual(0);
    }
    expect(commits.filter((c) => GHOSTS.includes(c.stream.id))).toEqual([]);

    const settled = outcomes(commits);
    const counts = { Completed: 0, Compensated: 0, Failed: 0 };
    for (const { id, from, to, amount } of planned) {
      const outcome = settled.get(id) as keyof typeof counts;
      counts[outcome] += 1;
      const made = (moves.get(id) ?? []).sort();
      // Completed: the source paid once, the target got it once. Compensated: the source paid
      // and was paid back. Failed: nothing moved.
      const expected = {
        Completed: [`${from} -${amount} @1`, `${to} +${amount} @2`],
        Compensated: [`${from} +${amount} @3`, `${from} -${amount} @1`],
        Failed: [],
      }[outcome];
      expect(made, `${id} (${from} → ${to}, ${amount}) ${outcome}`).toEqual(expected.sort());
      if (CLOSED.includes(to) || GHOSTS.includes(to)) expect(outcome, id).not.toBe('Completed');
      if (GHOSTS.includes(from) || amount > FUNDED.length * START_BALANCE) {
        expect(outcome, id).toBe('Failed');
      }
    }
    // The workload exercised every outcome. How many complete depends on the order the
    // transfers ran in (a source may be drained first), which varies with the machine's load:
    // 150 or so on a quiet machine, 105-120 on a loaded one.
    expect(counts.Completed).toBeGreaterThan(TRANSFERS / 4);
    expect(counts.Compensated).toBeGreaterThan(0);
    expect(counts.Failed).toBeGreaterThan(0);
  }, 40_000);
});
