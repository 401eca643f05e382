import { fileURLToPath } from 'node:url';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope } from '../../runtime/event-store/commit-envelope.js';
import {
  MsgpackCodec,
  createClient,
  isJetactorError,
  type DeadLetter,
  type ErrorJSON,
  type ServiceStats,
  type StoredEvent,
} from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { jsonLines, runCli } from '../fixtures/run-cli.js';
import { streamMessageCount } from '../fixtures/stream-contents.js';

const domainModule = fileURLToPath(
  new URL('../fixtures/corrupt-stream-domain.js', import.meta.url),
);
const msgpack = new MsgpackCodec();
const utf8 = new TextEncoder();

interface Reply {
  status: string;
  code: string;
  body: any;
}

async function command(nc: NatsConnection, subject: string, input: unknown): Promise<Reply> {
  const reply = await nc.request(subject, JSON.stringify(input), { timeout: 10_000 });
  return {
    status: reply.headers?.get('Jetactor-Status') ?? '',
    code: reply.headers?.get('Jetactor-Error-Code') ?? '',
    body: reply.json(),
  };
}

/** A commit the runtime would write, for `id` at `version`, after the commit at `previous`. */
function forgedCommit(id: string, previous: number, version: number, data: unknown): Uint8Array {
  const event: StoredEvent = {
    type: 'Deposited',
    data,
    meta: {
      domain: 'bank',
      aggregate: 'Account',
      aggregateId: id,
      version,
      timestamp: Date.now(),
      commandId: 'forged',
      correlationId: 'forged',
      causationId: 'forged',
    },
  };
  return encodeEnvelope(msgpack, previous, [event], [{ id: 'forged' }]);
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('a node process whose stream holds corrupt data', () => {
  let nc: NatsConnection;
  let node: NodeProcess;
  const prefix = uniqueName('cs');
  const cmd = (id: string, name: string) => `${prefix}.cmd.bank.Account.${id}.${name}`;
  const evt = (id: string) => `${prefix}.evt.bank.Account.${id}`;
  const start = () =>
    startNodeProcess({ natsUrl: sharedNatsUrl(), prefix, domains: [domainModule] });
  /** Stream sequence of each forged message, by aggregate id. */
  const poison = new Map<string, number>();

  beforeAll(async () => {
    nc = await connectShared();
    node = await start();
  });

  afterAll(async () => {
    await node.stop();
    await killAllNodes();
    await nc.close();
  });

  it('fails the damaged aggregates with a typed error naming subject and sequence, and serves the others', async () => {
    const positions = new Map<string, number>();
    for (const id of ['good', 'bytes', 'schema', 'gap']) {
      const open = await command(nc, cmd(id, 'open'), { owner: id });
      expect(open).toMatchObject({ status: 'ok' });
      positions.set(id, open.body.position);
    }
    const opened = await command(nc, cmd('schema', 'deposit'), { amount: 1 });
    const js = jetstream(nc);
    const publish = async (id: string, data: Uint8Array) =>
      poison.set(id, (await js.publish(evt(id), data)).seq);
    // Bytes that do not decode; an envelope whose event fails its schema; an envelope that skips
    // a version; a JSON event as another program would write it, on an aggregate never opened;
    // msgpack that is not an envelope.
    await publish('bytes', utf8.encode('not a commit'));
    await publish('schema', forgedCommit('schema', opened.body.position, 3, { amount: -5 }));
    await publish('gap', forgedCommit('gap', positions.get('gap')!, 5, { amount: 5 }));
    await publish('foreign', utf8.encode('{"type":"Opened","data":{"owner":"mallory"}}'));
    await publish('foreign-mp', msgpack.encode({ type: 'Opened', data: { owner: 'mallory' } }));
    const before = await streamMessageCount(nc, prefix, 'bank');

    // Live actors meet the damage when their next commit conflicts and they catch up; the others
    // load it cold. Either way: a typed error, never a success, never a stored event.
    const check = (reply: Reply, id: string) => {
      expect(reply.status, JSON.stringify(reply.body)).toBe('error');
      const error = reply.body.error as ErrorJSON;
      expect(['CORRUPT_DATA', 'REPLAY_FAILED']).toContain(reply.code);
      expect(error.kind).toBe('infrastructure');
      expect(error.message).toContain(evt(id));
      expect(error.message).toContain(`sequence ${poison.get(id)}`);
      expect(error.details).toMatchObject({ subject: evt(id), sequence: poison.get(id) });
      return reply.code;
    };
    const codes: Record<string, string> = {};
    for (const id of ['bytes', 'schema', 'gap', 'foreign', 'foreign-mp']) {
      codes[id] = check(await command(nc, cmd(id, 'deposit'), { amount: 1 }), id);
    }
    expect(codes).toEqual({
      bytes: 'CORRUPT_DATA',
      schema: 'REPLAY_FAILED',
      gap: 'REPLAY_FAILED',
      foreign: 'CORRUPT_DATA',
      'foreign-mp': 'CORRUPT_DATA',
    });
    // Asked again, a failed aggregate answers with a retryable error until it is repaired.
    const again = await command(nc, cmd('bytes', 'deposit'), { amount: 1 });
    expect(again.status).toBe('error');
    expect(['CORRUPT_DATA', 'AGGREGATE_UNAVAILABLE']).toContain(again.code);
    // The other aggregates on the same node keep working.
    expect(await command(nc, cmd('good', 'deposit'), { amount: 7 })).toMatchObject({
      status: 'ok',
      body: { version: 2 },
    });
    expect(await command(nc, cmd('fresh', 'open'), { owner: 'fresh' })).toMatchObject({
      status: 'ok',
    });
    expect(await streamMessageCount(nc, prefix, 'bank')).toBe(before + 2);
    const stats = (
      await nc.request(`$SRV.STATS.${prefix}`, '', { timeout: 5_000 })
    ).json<ServiceStats>();
    const actors = stats.endpoints.find((e) => e.name === 'cmd-bank')?.data?.actors as {
      failed: number;
    };
    expect(actors.failed).toBeGreaterThanOrEqual(1);

    // A fresh node process loads the same aggregates cold, with the same errors.
    await node.stop();
    node = await start();
    for (const id of ['bytes', 'schema', 'gap', 'foreign']) {
      expect(check(await command(nc, cmd(id, 'deposit'), { amount: 1 }), id)).toBe(codes[id]);
    }
    expect(await command(nc, cmd('good', 'deposit'), { amount: 1 })).toMatchObject({
      status: 'ok',
      body: { version: 3 },
    });
    expect(node.child.exitCode).toBeNull();
  });

  it('dead-letters the poison in its reactor and its projection, which say so instead of stalling silently', async () => {
    const cli = async (args: string[]) => {
      const run = await runCli(
        ['deadletters', ...args, '--nats', sharedNatsUrl(), '--prefix', prefix],
        [],
        { endInput: true },
      );
      expect(run.code, run.stderr).toBe(0);
      return jsonLines(run) as DeadLetter[];
    };
    const stats = async () => {
      const reply = await nc.request(`$SRV.STATS.${prefix}`, '', { timeout: 5_000 });
      return reply.json<ServiceStats>().endpoints.find((e) => e.name === 'cmd-bank')?.data
        ?.actors as {
        reactors: Record<string, { handled: number; deadLetters: number; lag: number }>;
        projections: Record<string, { state: string; blockedBy?: number; position: number }>;
      };
    };
    const check = (letter: DeadLetter, consumer: string, id: string) => {
      expect(letter).toMatchObject({
        domain: 'bank',
        reactor: consumer,
        subject: evt(id),
        sequence: poison.get(id),
        aggregateId: id,
        poison: true,
        attempts: 0,
        error: { code: 'CORRUPT_DATA' },
      });
      expect(letter.error.message).toContain(`sequence ${poison.get(id)}`);
      expect(letter.error.message).toContain(`"${evt(id)}"`);
    };
    // What reactors and projections cannot read. (The commit that skips versions is well formed
    // and its event valid: only the aggregate's replay, which checks versions, refuses it.)
    const unreadable = ['bytes', 'schema', 'foreign', 'foreign-mp'];
    const client = createClient({ connection: nc, prefix, timeoutMs: 10_000, retries: 0 });
    const last = await client.execute({
      domain: 'bank',
      aggregate: 'Account',
      id: 'good',
      command: 'deposit',
      input: { amount: 10 },
    });

    // The reactor (policy skip) dead-letters each one and goes on past them.
    await waitFor('the reactor to pass the poison', async () => {
      const { reactors } = await stats();
      return reactors['bank.audit']?.lag === 0 ? true : undefined;
    });
    const audit = (await cli(['list', '--reactor', 'audit'])).sort(
      (a, b) => a.sequence - b.sequence,
    );
    expect(audit).toHaveLength(unreadable.length);
    for (const [index, id] of unreadable.entries()) check(audit[index]!, 'audit', id);

    // The projection (policy wait) halts at each one, says what it waits behind, and goes on
    // once it is discarded; meanwhile a query that needs a later position is PROJECTION_BEHIND.
    for (const id of unreadable) {
      const letter = await waitFor(`the projection's dead letter for ${id}`, async () =>
        (await cli(['list', '--reactor', 'balances'])).find((l) => l.aggregateId === id),
      );
      check(letter, 'balances', id);
      const blocked = await waitFor('the projection to report it', async () => {
        const projection = (await stats()).projections['bank.balances'];
        return projection?.state === 'blocked' ? projection : undefined;
      });
      expect(blocked.blockedBy).toBe(letter.id);
      expect(blocked.position).toBeLessThan(poison.get(id)!);
      const behind = await client
        .query(
          'bank',
          'balance',
          { account: 'good' },
          { waitFor: last.position, waitTimeoutMs: 200 },
        )
        .catch((error: unknown) => error);
      expect(isJetactorError(behind) && behind.code).toBe('PROJECTION_BEHIND');
      await cli(['discard', String(letter.id)]);
    }
    const balance = await client.query(
      'bank',
      'balance',
      { account: 'good' },
      { waitFor: last.position, waitTimeoutMs: 10_000 },
    );
    expect(balance).toMatchObject({ account: 'good', balance: 18 });
    expect((await stats()).projections['bank.balances']).toMatchObject({ state: 'running' });
    client.close();
  });
});
