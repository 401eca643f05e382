import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account } from '../../domains/bank/index.js';
import {
  JetStreamEventStore,
  createNode,
  defineDomain,
  defineReactor,
  type DeadLetter,
  type DomainNode,
} from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { jsonLines, runCli } from '../fixtures/run-cli.js';
import { silentLogger } from '../fixtures/test-support.js';

describe('jetactor deadletters', () => {
  let nc: NatsConnection;
  let prefix: string;
  let node: DomainNode;
  let broken = true;
  const handled: number[] = [];

  const cli = (...args: string[]) =>
    runCli(['deadletters', ...args, '--nats', sharedNatsUrl(), '--prefix', prefix]);

  async function deadLetters(): Promise<DeadLetter[]> {
    const run = await cli('list');
    expect(run.code, run.stderr).toBe(0);
    return jsonLines(run) as DeadLetter[];
  }

  async function startNode(): Promise<DomainNode> {
    const fragile = defineReactor({
      name: 'fragile',
      aggregates: [Account],
      retry: { attempts: 2, backoffMs: 5 },
      deadLetters: 'wait',
      on: {
        'Account.Deposited': (event) => {
          if (broken) throw new Error(`ledger offline for ${event.data.amount}`);
          handled.push(event.data.amount);
        },
      },
    });
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const started = createNode({
      domains: [defineDomain({ name: 'bank', aggregates: [Account], reactors: [fragile] })],
      store,
      logger: silentLogger,
      reactors: { ackWaitMs: 1_000 },
    });
    await started.start();
    return started;
  }

  beforeAll(async () => {
    nc = await connectShared();
    prefix = uniqueName('dl');
    node = await startNode();
    for (const id of ['a', 'b', 'c']) {
      await node.aggregate(Account, id).open({ owner: id });
      await node.aggregate(Account, id).deposit({ amount: id.charCodeAt(0) });
    }
    const deadline = Date.now() + 5_000;
    while ((await node.reactors.deadLetters()).length < 3 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  afterAll(async () => {
    await node.stop();
    await nc.close();
  });

  it('lists dead letters as JSON lines, filtered by domain and reactor', async () => {
    const all = await deadLetters();
    expect(all.map((d) => d.aggregateId)).toEqual(['a', 'b', 'c']);
    expect(all[0]).toMatchObject({
      domain: 'bank',
      reactor: 'fragile',
      subject: `${prefix}.evt.bank.Account.a`,
      eventType: 'Deposited',
      version: 2,
      attempts: 2,
      policy: 'wait',
      error: { code: 'REACTOR_HANDLER_FAILED', message: 'ledger offline for 97' },
    });
    const none = await cli('list', '--reactor', 'other');
    expect(jsonLines(none)).toEqual([]);
    const ofBank = await cli('list', '--domain', 'bank', '--reactor', 'fragile');
    expect(jsonLines(ofBank)).toHaveLength(3);
  });

  it('replays one through the running node: failing again keeps it, once fixed removes it', async () => {
    const [first] = await deadLetters();
    const again = await cli('replay', String(first!.id));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('error REACTOR_HANDLER_FAILED');
    expect(again.stderr).toContain('ledger offline for 97');
    expect((await deadLetters()).map((d) => d.id)).toContain(first!.id);

    broken = false;
    const replayed = await cli('replay', String(first!.id));
    expect(replayed.code, replayed.stderr).toBe(0);
    expect(jsonLines(replayed)).toEqual([expect.objectContaining({ id: first!.id })]);
    expect(replayed.stderr).toContain(`replayed dead letter ${first!.id}`);
    expect(handled).toEqual([97]);
    expect((await deadLetters()).map((d) => d.aggregateId)).toEqual(['b', 'c']);
  });

  it('discards one through the node, which lets the waiting aggregate go on', async () => {
    const [second] = await deadLetters();
    expect(node.stats().reactors['bank.fragile']?.blocked).toBe(2);
    await node.aggregate(Account, 'b').deposit({ amount: 1 });
    const discarded = await cli('discard', String(second!.id));
    expect(discarded.code, discarded.stderr).toBe(0);
    const deadline = Date.now() + 5_000;
    while (!handled.includes(1) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(handled).toEqual([97, 1]);
    expect(node.stats().reactors['bank.fragile']?.blocked).toBe(1);
  });

  it('says what is wrong: an unknown id, a bad id, no node to replay on', async () => {
    const missing = await cli('replay', '999999');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('error DEAD_LETTER_NOT_FOUND');
    expect(missing.stderr).toContain('jetactor deadletters list');

    const bad = await cli('replay', 'abc');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"abc" is not a dead letter id');

    const unknown = await cli('retry', '1');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('use list, replay <id> or discard <id>');

    await node.stop();
    const [last] = await deadLetters();
    const noNode = await cli('replay', String(last!.id));
    expect(noNode.code).toBe(1);
    expect(noNode.stderr).toContain('error REACTOR_UNAVAILABLE');
    expect(noNode.stderr).toContain('No running node hosts reactor "fragile"');

    // Without a node a discard removes the record itself; the next node does not wait for it.
    const discarded = await cli('discard', String(last!.id));
    expect(discarded.code, discarded.stderr).toBe(0);
    expect(await deadLetters()).toEqual([]);
    node = await startNode();
    await node.aggregate(Account, 'c').deposit({ amount: 2 });
    const deadline = Date.now() + 5_000;
    while (!handled.includes(2) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(handled).toEqual([97, 1, 2]);
  });
});
