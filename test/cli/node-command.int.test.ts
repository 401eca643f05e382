import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  createClient,
  isJetactorError,
  type JetactorClient,
  type ServicePing,
  type ServiceStats,
} from '../../runtime/index.js';
import {
  connectShared,
  sharedNatsUrl,
  startNatsServer,
  uniqueName,
  type LocalNatsServer,
} from '../helpers/nats.js';
import { jsonLines, runCli } from '../fixtures/run-cli.js';
import {
  killAllNodes,
  spawnNode,
  startNodeProcess,
  type NodeProcess,
} from '../fixtures/node-process.js';
import { storedCommandIds, storedCommits } from '../fixtures/stream-contents.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The outcome of one command sent under load. */
interface Outcome {
  commandId: string;
  ok: boolean;
  code?: string;
  retryable?: boolean;
}

/**
 * Sends deposits of 1 from `workers` concurrent loops, round robin over `ids`, each with its own
 * command id, until `stop()`; resolves with every outcome.
 */
function loadOf(
  client: JetactorClient,
  ids: readonly string[],
  workers: number,
): { stop: () => Promise<Outcome[]>; sent: () => number } {
  const outcomes: Outcome[] = [];
  let running = true;
  let next = 0;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const n = next++;
      const commandId = `dep-${n}`;
      try {
        await client
          .aggregate(Account, ids[n % ids.length]!, 'bank')
          .deposit({ amount: 1 }, { commandId });
        outcomes.push({ commandId, ok: true });
      } catch (error) {
        if (!isJetactorError(error)) throw error;
        outcomes.push({ commandId, ok: false, code: error.code, retryable: error.retryable });
      }
    }
  });
  return {
    sent: () => next,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

async function stats(nc: NatsConnection, prefix: string): Promise<ServiceStats[]> {
  const replies: ServiceStats[] = [];
  for await (const msg of await nc.requestMany(`$SRV.STATS.${prefix}`, '', { maxWait: 300 })) {
    replies.push(msg.json<ServiceStats>());
  }
  return replies;
}

describe('jetactor node', () => {
  let nc: NatsConnection;
  let dir: string;

  beforeAll(async () => {
    nc = await connectShared();
    dir = await mkdtemp(join(tmpdir(), 'jetactor-node-test-'));
  });

  afterAll(async () => {
    await killAllNodes();
    await nc.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves commands from the CLI, the typed client and a raw JSON request, and stops on SIGTERM', async () => {
    const prefix = uniqueName('n');
    const url = sharedNatsUrl();
    const node = await startNodeProcess({ natsUrl: url, prefix });
    expect(node.stderr()).toContain(`${prefix}.cmd.bank.>`);
    expect(node.stderr()).toContain(`nats req ${prefix}.cmd.bank.Account.demo-1.open`);
    expect(node.stderr()).toContain('jetactor send bank.Account.demo-1 open');
    expect(node.logs().map((l) => l.msg)).toEqual([
      'connected',
      'stream created',
      'streams ready',
      'listening',
    ]);

    const sent = await runCli(
      ['send', 'bank.Account.all-1', 'open', '{"owner":"ann"}', '--nats', url, '--prefix', prefix],
      [],
      { endInput: true },
    );
    expect(sent.code).toBe(0);
    expect(jsonLines(sent)).toMatchObject([{ version: 1, events: [{ type: 'Opened' }] }]);

    const client = createClient({ connection: nc, prefix, domains: [bank] });
    const deposited = await client.aggregate(Account, 'all-1').deposit({ amount: 5 });
    expect(deposited).toMatchObject({ version: 2, response: { balance: 5 } });
    client.close();

    const raw = await nc.request(`${prefix}.cmd.bank.Account.all-1.deposit`, '{"amount":2}', {
      timeout: 5_000,
    });
    expect(raw.headers?.get('Jetactor-Status')).toBe('ok');
    expect(raw.json()).toMatchObject({ version: 3, response: { balance: 7 } });

    const pings: ServicePing[] = [];
    for await (const msg of await nc.requestMany(`$SRV.PING.${prefix}`, '', { maxWait: 300 })) {
      pings.push(msg.json<ServicePing>());
    }
    expect(pings).toMatchObject([
      { type: 'io.nats.micro.v1.ping_response', name: prefix, metadata: { domains: 'bank' } },
    ]);

    const exit = await node.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(
      node
        .logs()
        .map((l) => l.msg)
        .slice(-2),
    ).toEqual(['stopping', 'stopped']);
  });

  it('reports bad configuration with exit code 2 and names the field', async () => {
    const notJson = join(dir, 'broken.json');
    await writeFile(notJson, '{ nats: ');
    const unknownField = join(dir, 'unknown.json');
    await writeFile(unknownField, JSON.stringify({ natsUrl: 'nats://127.0.0.1:4222' }));
    const cases: [string[], Record<string, string>, RegExp][] = [
      [
        ['bank', '--nats', 'http://example:4222'],
        {},
        /--nats: "http:\/\/example:4222" is not a NATS URL/,
      ],
      [
        ['bank', '--max-in-flight', 'lots'],
        {},
        /--max-in-flight \("lots"\): must be a whole number/,
      ],
      [
        ['bank', '--config', unknownField],
        {},
        /unknown field "natsUrl"; the known ones are nats, creds/,
      ],
      [['bank', '--config', notJson], {}, /broken\.json is not valid JSON/],
      [['bank', '--user', 'ann'], {}, /--user needs --password too/],
      [['bank', '--creds', join(dir, 'missing.creds')], {}, /--creds .*no such file/],
      [['bank', '--prefix', 'a.b'], {}, /--prefix \("a\.b"\): must be letters/],
      [['bank', '--partitions', '2000'], {}, /--partitions \("2000"\): must be at most 1024/],
      [['bank', '--node-id', 'a.b'], {}, /--node-id \("a\.b"\): must be 1 to 64 letters/],
      [
        ['bank'],
        { JETACTOR_LEASE_MS: '10' },
        /env JETACTOR_LEASE_MS \("10"\): must be at least 250/,
      ],
      [['bank'], { JETACTOR_MAX_PAYLOAD_BYTES: 'big' }, /env JETACTOR_MAX_PAYLOAD_BYTES/],
      [[], {}, /name at least one domain module/],
      [['bank', '--bogus'], {}, /Unknown option '--bogus'/],
      [['no-such-module.js'], {}, /"no-such-module\.js" not found/],
    ];
    const runs = await Promise.all(
      cases.map(async ([args, env]) => {
        const node = spawnNode(args, env);
        const exit = await node.exited;
        return { exit, stderr: node.stderr(), stdout: node.stdout() };
      }),
    );
    for (const [index, run] of runs.entries()) {
      expect(run.exit.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(cases[index]![2]);
      expect(run.stdout).toBe('');
    }
  });

  it('exits 1 with CONNECTION_FAILED when NATS cannot be reached', async () => {
    const node = spawnNode(['bank', '--nats', 'nats://127.0.0.1:1']);
    expect((await node.exited).code).toBe(1);
    expect(node.stderr()).toMatch(
      /CONNECTION_FAILED: Cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/,
    );
  });

  it('takes its connection from the environment and from a config file', async () => {
    const prefix = uniqueName('e');
    const fromEnv = spawnNode(['bank'], { NATS_URL: sharedNatsUrl(), JETACTOR_PREFIX: prefix });
    const config = join(dir, 'node.json');
    const other = uniqueName('f');
    await writeFile(
      config,
      JSON.stringify({ nats: [sharedNatsUrl()], prefix: other, domains: ['bank'] }),
    );
    const fromFile = spawnNode(['--config', config]);
    const listening = async (node: NodeProcess) => {
      while (!node.logs().some((l) => l.msg === 'listening')) {
        expect(node.child.exitCode, node.stderr()).toBeNull();
        await sleep(20);
      }
    };
    await Promise.all([listening(fromEnv), listening(fromFile)]);
    for (const p of [prefix, other]) {
      const reply = await nc.request(`${p}.cmd.bank.Account.env-1.open`, '{"owner":"ann"}', {
        timeout: 5_000,
      });
      expect(reply.headers?.get('Jetactor-Status')).toBe('ok');
    }
    await Promise.all([fromEnv.stop(), fromFile.stop()]);
  });

  it('exits at once with 130 on a second SIGINT while stopping', async () => {
    const server: LocalNatsServer = await startNatsServer();
    try {
      const node = await startNodeProcess({ natsUrl: server.url, prefix: 'second' });
      await server.pause(); // stopping now waits for the server
      node.signal('SIGINT');
      await sleep(200);
      expect(node.child.exitCode).toBeNull();
      node.signal('SIGINT');
      const exit = await node.exited;
      expect(exit.code).toBe(130);
      expect(node.stderr()).toContain('SIGINT again; exiting at once');
      await server.resume();
    } finally {
      await server.cleanup();
    }
  });
});

describe('jetactor node under load', () => {
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    await killAllNodes();
    await nc.close();
  });

  it('answers every command on SIGTERM: success and stored, or a retryable error and not stored', async () => {
    const prefix = uniqueName('g');
    const node = await startNodeProcess({ natsUrl: sharedNatsUrl(), prefix });
    const client = createClient({
      connection: nc,
      prefix,
      timeoutMs: 3_000,
      retries: 2,
      backoffMs: 20,
    });
    const ids = Array.from({ length: 20 }, (_, i) => `g-${i}`);
    await Promise.all(ids.map((id) => client.aggregate(Account, id, 'bank').open({ owner: id })));
    const load = loadOf(client, ids, 20);
    await sleep(300);
    node.signal('SIGTERM');
    const exit = await node.exited;
    await sleep(200);
    const outcomes = await load.stop();
    client.close();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(
      node
        .logs()
        .map((l) => l.msg)
        .slice(-2),
    ).toEqual(['stopping', 'stopped']);
    const stored = await storedCommandIds(nc, prefix, 'bank');
    const ok = outcomes.filter((o) => o.ok);
    const failed = outcomes.filter((o) => !o.ok);
    expect(ok.length).toBeGreaterThan(0);
    expect(failed.length).toBeGreaterThan(0);
    for (const o of ok) expect(stored.get(o.commandId), o.commandId).toBe(1);
    for (const o of failed) {
      expect(o.retryable, `${o.commandId} ${o.code}`).toBe(true);
      expect(stored.get(o.commandId), `${o.commandId} ${o.code}`).toBeUndefined();
    }
    console.info(
      `graceful stop under load: ${ok.length} commands succeeded and stored, ${failed.length} refused (${[...new Set(failed.map((f) => f.code))].join(', ')}) and not stored`,
    );
  });

  it('lets two nodes serve the same domain with no lost update', async () => {
    const prefix = uniqueName('two');
    const [a, b] = await Promise.all([
      startNodeProcess({ natsUrl: sharedNatsUrl(), prefix }),
      startNodeProcess({ natsUrl: sharedNatsUrl(), prefix }),
    ]);
    const client = createClient({ connection: nc, prefix, timeoutMs: 5_000 });
    const ids = Array.from({ length: 10 }, (_, i) => `t-${i}`);
    await Promise.all(ids.map((id) => client.aggregate(Account, id, 'bank').open({ owner: id })));
    const results = await Promise.all(
      Array.from({ length: 400 }, (_, n) =>
        client
          .aggregate(Account, ids[n % ids.length]!, 'bank')
          .deposit({ amount: 1 }, { commandId: `dep-${n}` }),
      ),
    );
    expect(results).toHaveLength(400);
    const stored = await storedCommandIds(nc, prefix, 'bank');
    for (let n = 0; n < 400; n++) expect(stored.get(`dep-${n}`)).toBe(1);
    const views = await Promise.all(ids.map((id) => client.view(Account, id, 'bank')));
    expect(views.reduce((sum, v) => sum + (v.context as { balance: number }).balance, 0)).toBe(400);
    const versions = new Map<string, number[]>();
    for (const commit of await storedCommits(nc, prefix, 'bank')) {
      const list = versions.get(commit.stream.id) ?? [];
      list.push(...commit.events.map((e) => e.meta.version));
      versions.set(commit.stream.id, list);
    }
    for (const list of versions.values()) {
      expect(list).toEqual(Array.from({ length: list.length }, (_, i) => i + 1));
    }
    const perNode = (await stats(nc, prefix)).map(
      (s) => s.endpoints.find((e) => e.name === 'cmd-bank')?.num_requests ?? 0,
    );
    expect(perNode).toHaveLength(2);
    expect(perNode.every((n) => n > 0)).toBe(true);
    console.info(`two nodes: commands per node ${perNode.join(' / ')}`);
    client.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  it('stores every acknowledged command exactly once when one of two nodes is killed -9', async () => {
    const prefix = uniqueName('k');
    const [a, b] = await Promise.all([
      startNodeProcess({ natsUrl: sharedNatsUrl(), prefix }),
      startNodeProcess({ natsUrl: sharedNatsUrl(), prefix }),
    ]);
    const client = createClient({
      connection: nc,
      prefix,
      timeoutMs: 1_000,
      retries: 5,
      backoffMs: 50,
    });
    const ids = Array.from({ length: 40 }, (_, i) => `k-${i}`);
    await Promise.all(ids.map((id) => client.aggregate(Account, id, 'bank').open({ owner: id })));
    const load = loadOf(client, ids, 16);
    await sleep(400);
    a.signal('SIGKILL');
    const exit = await a.exited;
    await sleep(1_500);
    const outcomes = await load.stop();
    expect(exit.signal).toBe('SIGKILL');
    const ok = outcomes.filter((o) => o.ok);
    const failed = outcomes.filter((o) => !o.ok);
    const stored = await storedCommandIds(nc, prefix, 'bank');
    for (const o of ok) expect(stored.get(o.commandId), o.commandId).toBe(1);
    for (const [commandId, times] of stored) expect(times, commandId).toBe(1);
    for (const o of failed) expect(o.retryable, `${o.commandId} ${o.code}`).toBe(true);
    const after = await client.aggregate(Account, 'k-0', 'bank').deposit({ amount: 1 });
    expect(after.duplicate).toBe(false);
    const views = await Promise.all(ids.map((id) => client.view(Account, id, 'bank')));
    const deposits = [...stored.keys()].filter((id) => id.startsWith('dep-')).length;
    expect(views.reduce((sum, v) => sum + (v.context as { balance: number }).balance, 0)).toBe(
      deposits + 1,
    );
    console.info(
      `kill -9 under load: ${ok.length} acknowledged, each stored once; ${failed.length} failed after retries; ${deposits} deposits stored`,
    );
    client.close();
    await b.stop();
  });
});
