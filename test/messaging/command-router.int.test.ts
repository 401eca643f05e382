import { createInbox, headers, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bank } from '../../domains/bank/index.js';
import {
  CommandRouter,
  JetStreamEventStore,
  MsgpackCodec,
  createClient,
  createNode,
  type CommandResult,
  type DomainNode,
  type ErrorJSON,
} from '../../runtime/index.js';
import { fromCompactResult } from '../../runtime/messaging/compact-result.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { storedCommandIds, streamMessageCount } from '../fixtures/stream-contents.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const msgpack = new MsgpackCodec();
const text = new TextDecoder();

interface RawReply {
  status: string;
  code: string;
  contentType: string;
  body: any;
}

/** A raw NATS request, as `nats req` or any other client sends it. */
async function raw(
  nc: NatsConnection,
  subject: string,
  body: string | Uint8Array,
  h?: MsgHdrs,
): Promise<RawReply> {
  const reply = await nc.request(subject, body, {
    timeout: 5_000,
    ...(h === undefined ? {} : { headers: h }),
  });
  const contentType = reply.headers?.get('Content-Type') ?? '';
  return {
    status: reply.headers?.get('Jetactor-Status') ?? '',
    code: reply.headers?.get('Jetactor-Error-Code') ?? '',
    contentType,
    body:
      contentType === 'application/msgpack'
        ? msgpack.decode(reply.data)
        : (JSON.parse(text.decode(reply.data)) as unknown),
  };
}

function hdrs(entries: Record<string, string | string[]>): MsgHdrs {
  const h = headers();
  for (const [key, value] of Object.entries(entries)) {
    for (const one of Array.isArray(value) ? value : [value]) h.append(key, one);
  }
  return h;
}

describe('the command router of a node process', () => {
  let nc: NatsConnection;
  let node: NodeProcess;
  const prefix = uniqueName('r');
  const cmd = (rest: string) => `${prefix}.cmd.${rest}`;

  beforeAll(async () => {
    nc = await connectShared();
    node = await startNodeProcess({
      natsUrl: sharedNatsUrl(),
      prefix,
      domains: ['bank', 'flight'],
      args: ['--max-payload', '2048'],
    });
  });

  afterAll(async () => {
    await node.stop();
    await killAllNodes();
    await nc.close();
  });

  it('answers a JSON request without headers with a JSON reply, as `nats req` sends it', async () => {
    const reply = await raw(nc, cmd('bank.Account.json-1.open'), '{"owner":"ann"}');
    expect(reply).toMatchObject({ status: 'ok', code: '', contentType: 'application/json' });
    expect(reply.body).toMatchObject({
      version: 1,
      duplicate: false,
      events: [{ type: 'Opened', data: { owner: 'ann', overdraftLimit: 0 } }],
    });
    const landed = await raw(nc, cmd('flight.Aircraft.ac-1.takeOff'), '');
    expect(landed).toMatchObject({ status: 'ok', body: { version: 1 } });
    const land = await raw(nc, cmd('flight.Aircraft.ac-1.land'), '  {"airport":"CDG"}\n');
    expect(land).toMatchObject({
      status: 'ok',
      body: { version: 2, response: { airport: 'CDG' } },
    });
  });

  it('answers msgpack with msgpack, with or without a Content-Type header', async () => {
    const open = await raw(
      nc,
      cmd('bank.Account.mp-1.open'),
      msgpack.encode({ owner: 'bob' }),
      hdrs({ 'Content-Type': 'application/msgpack' }),
    );
    expect(open).toMatchObject({ status: 'ok', contentType: 'application/msgpack' });
    expect(open.body).toMatchObject({ version: 1 });
    const deposit = await raw(nc, cmd('bank.Account.mp-1.deposit'), msgpack.encode({ amount: 7 }));
    expect(deposit).toMatchObject({
      status: 'ok',
      contentType: 'application/msgpack',
      body: { version: 2, response: { balance: 7 } },
    });
    const json = await raw(
      nc,
      cmd('bank.Account.mp-1.deposit'),
      '{"amount":1}',
      hdrs({ 'content-type': 'application/json; charset=utf-8' }),
    );
    expect(json).toMatchObject({ status: 'ok', contentType: 'application/json' });
  });

  it('takes command id, expected version, correlation, causation and actor from headers', async () => {
    await raw(nc, cmd('bank.Account.h-1.open'), '{"owner":"ann"}');
    const options = {
      'Jetactor-Command-Id': 'dep-h-1',
      'Jetactor-Expected-Version': '1',
      'Jetactor-Correlation-Id': 'corr-1',
      'jetactor-causation-id': 'cause-1',
      'Jetactor-Actor': 'ann@example',
    };
    const first = await raw(nc, cmd('bank.Account.h-1.deposit'), '{"amount":5}', hdrs(options));
    expect(first).toMatchObject({ status: 'ok', body: { commandId: 'dep-h-1', version: 2 } });
    expect(first.body.events[0].meta).toMatchObject({
      commandId: 'dep-h-1',
      correlationId: 'corr-1',
      causationId: 'cause-1',
      actor: 'ann@example',
    });
    const again = await raw(nc, cmd('bank.Account.h-1.deposit'), '{"amount":5}', hdrs(options));
    expect(again).toMatchObject({ status: 'ok', body: { version: 2, duplicate: true } });
    const stale = await raw(
      nc,
      cmd('bank.Account.h-1.deposit'),
      '{"amount":5}',
      hdrs({ 'Jetactor-Expected-Version': '1' }),
    );
    expect(stale).toMatchObject({
      status: 'error',
      code: 'WRONG_EXPECTED_VERSION',
      body: { error: { kind: 'rejection', details: { expected: 1, actual: 2 } } },
    });
    expect((await storedCommandIds(nc, prefix, 'bank')).get('dep-h-1')).toBe(1);
  });

  it('answers the compact form on Jetactor-Reply: compact, which stands for the full result', async () => {
    await raw(nc, cmd('bank.Account.compact-1.open'), '{"owner":"ann"}');
    const options = {
      'Jetactor-Command-Id': 'dep-compact-1',
      'Jetactor-Correlation-Id': 'corr-c',
      'Jetactor-Actor': 'ann@example',
    };
    const compact = await raw(
      nc,
      cmd('bank.Account.compact-1.deposit'),
      msgpack.encode({ amount: 7 }),
      hdrs({ ...options, 'Jetactor-Reply': 'Compact' }),
    );
    expect(compact).toMatchObject({ status: 'ok', contentType: 'application/msgpack' });
    expect(compact.body).toMatchObject({ i: 'dep-compact-1', v: 2, e: [{ t: 'Deposited' }] });
    expect(compact.body.e[0]).not.toHaveProperty('ca');
    // The same command again, full form: the duplicate's result is the first one.
    const full = await raw(
      nc,
      cmd('bank.Account.compact-1.deposit'),
      msgpack.encode({ amount: 7 }),
      hdrs(options),
    );
    expect(full.body.duplicate).toBe(true);
    expect(
      fromCompactResult(compact.body, { domain: 'bank', aggregate: 'Account', id: 'compact-1' }),
    ).toEqual({ ...full.body, duplicate: false });
    expect(full.body.events[0].meta).toMatchObject({
      correlationId: 'corr-c',
      causationId: 'dep-compact-1',
      actor: 'ann@example',
    });
    const again = await raw(
      nc,
      cmd('bank.Account.compact-1.deposit'),
      '{"amount":7}',
      hdrs({ ...options, 'Jetactor-Reply': 'compact' }),
    );
    expect(again).toMatchObject({
      contentType: 'application/json',
      body: { i: 'dep-compact-1', u: true },
    });
  });

  it('answers every bad request with its code, stores nothing and keeps serving', async () => {
    await raw(nc, cmd('bank.Account.bad-1.open'), '{"owner":"ann"}');
    const before = await streamMessageCount(nc, prefix, 'bank');
    const cases: [string, string | Uint8Array, MsgHdrs | undefined, string][] = [
      [cmd('bank.Vault.v-1.open'), '{}', undefined, 'UNKNOWN_AGGREGATE'],
      [cmd('bank.Account.bad-1.transfer'), '{}', undefined, 'UNKNOWN_COMMAND'],
      [cmd(`bank.Account.${'x'.repeat(300)}.deposit`), '{"amount":1}', undefined, 'INVALID_ID'],
      [cmd('bank.Account.bad-1'), '{}', undefined, 'INVALID_SUBJECT'],
      [cmd('bank.Account.bad.1.deposit'), '{"amount":1}', undefined, 'INVALID_SUBJECT'],
      [cmd('bank.Account.bad-1.deposit'), '{"amount":', undefined, 'INVALID_PAYLOAD'],
      [
        cmd('bank.Account.bad-1.deposit'),
        new Uint8Array([0xc1, 0x00]),
        undefined,
        'INVALID_PAYLOAD',
      ],
      [
        cmd('bank.Account.bad-1.deposit'),
        'amount=1',
        hdrs({ 'Content-Type': 'text/plain' }),
        'INVALID_PAYLOAD',
      ],
      [cmd('bank.Account.bad-1.deposit'), '{"amount":"ten"}', undefined, 'VALIDATION_FAILED'],
      [cmd('bank.Account.bad-1.deposit'), '[1,2]', undefined, 'VALIDATION_FAILED'],
      [
        cmd('bank.Account.bad-1.deposit'),
        JSON.stringify({ amount: 1, note: 'x'.repeat(3_000) }),
        undefined,
        'PAYLOAD_TOO_LARGE',
      ],
      [
        cmd('bank.Account.bad-1.deposit'),
        '{"amount":1}',
        hdrs({ 'Jetactor-Expected-Version': 'two' }),
        'INVALID_HEADER',
      ],
      [
        cmd('bank.Account.bad-1.deposit'),
        '{"amount":1}',
        hdrs({ 'Jetactor-Expected-Versoin': '1' }),
        'INVALID_HEADER',
      ],
      [
        cmd('bank.Account.bad-1.deposit'),
        '{"amount":1}',
        hdrs({ 'Jetactor-Command-Id': 'c'.repeat(300) }),
        'INVALID_HEADER',
      ],
      [
        cmd('bank.Account.bad-1.deposit'),
        '{"amount":1}',
        hdrs({ 'Jetactor-Actor': ['ann', 'bob'] }),
        'INVALID_HEADER',
      ],
      [
        cmd('bank.Account.bad-1.deposit'),
        '{"amount":1}',
        hdrs({ 'Jetactor-Timeout': 'soon' }),
        'INVALID_HEADER',
      ],
      [
        cmd('bank.Account.bad-1.deposit'),
        '{"amount":1}',
        hdrs({ 'Jetactor-Timeout': '0' }),
        'INVALID_HEADER',
      ],
      [cmd('bank.Account.bad-1.withdraw'), '{"amount":1000}', undefined, 'INSUFFICIENT_FUNDS'],
      [
        cmd('bank.Account.bad-1.deposit'),
        '{"amount":1}',
        hdrs({ 'Jetactor-Reply': 'tiny' }),
        'INVALID_HEADER',
      ],
    ];
    const replies = await Promise.all(cases.map(([s, b, h]) => raw(nc, s, b, h)));
    expect(replies.map((r) => r.code)).toEqual(cases.map((c) => c[3]));
    for (const reply of replies) {
      expect(reply.status).toBe('error');
      const error = reply.body.error as ErrorJSON;
      expect(error.kind).toBe('rejection');
      expect(error.code).toBe(reply.code);
      expect(error.message.length).toBeGreaterThan(20);
    }
    const validation = replies[8]!.body.error as ErrorJSON;
    expect(validation.details).toMatchObject({ issues: [{ path: ['amount'] }] });
    expect(replies[10]!.body.error.details).toMatchObject({ limit: 2048 });
    expect(replies[1]!.body.error.details.known).toContain('deposit');
    expect(replies[11]!.body.error.message).toContain('Jetactor-Expected-Version');
    expect(replies[15]!.body.error.message).toContain('"soon"');
    expect(replies[15]!.body.error.message).toContain('milliseconds');
    expect(replies[18]!.body.error.message).toMatch(
      /Jetactor-Reply is "tiny"; its one value is "compact"/,
    );
    expect(await streamMessageCount(nc, prefix, 'bank')).toBe(before);
    const good = await raw(nc, cmd('bank.Account.bad-1.deposit'), '{"amount":1}');
    expect(good).toMatchObject({ status: 'ok', body: { version: 2 } });
  });

  it('gets no responders from NATS for a domain no node hosts', async () => {
    await expect(nc.request(cmd('shop.Cart.c-1.add'), '{}', { timeout: 2_000 })).rejects.toThrow(
      /no responders/i,
    );
  });

  it('ignores requests without a reply subject', async () => {
    const before = await streamMessageCount(nc, prefix, 'bank');
    nc.publish(cmd('bank.Account.noreply-1.open'), '{"owner":"ann"}');
    await nc.flush();
    // A request after it is answered, so the one without a reply subject was seen and skipped.
    await raw(nc, cmd('bank.Account.noreply-2.open'), '{"owner":"ann"}');
    expect(await streamMessageCount(nc, prefix, 'bank')).toBe(before + 1);
  });

  it('answers a flood of bad requests while good ones still get answered', async () => {
    const client = createClient({ connection: nc, prefix, timeoutMs: 5_000, retries: 0 });
    const ids = Array.from({ length: 10 }, (_, i) => `flood-${i}`);
    await Promise.all(
      ids.map((id) =>
        client.execute({
          domain: 'bank',
          aggregate: 'Account',
          id,
          command: 'open',
          input: { owner: id },
        }),
      ),
    );
    const before = [...(await storedCommandIds(nc, prefix, 'bank')).values()].reduce(
      (sum, n) => sum + n,
      0,
    );
    const flood = await connectShared();
    const inbox = createInbox();
    let errorReplies = 0;
    flood.subscribe(inbox, {
      callback: (_error, msg) => {
        if (msg.headers?.get('Jetactor-Status') === 'error') errorReplies += 1;
      },
    });
    const bad = [
      [cmd('bank.Account.flood-0.deposit'), '{"amount":'],
      [cmd('bank.Account.flood-0.deposit'), '{"amount":-1}'],
      [cmd('bank.Account.flood-0.steal'), '{}'],
      [cmd('bank.Vault.flood-0.deposit'), '{}'],
    ] as const;
    const floodSize = 4_000;
    const started = Date.now();
    for (let i = 0; i < floodSize; i++) {
      const [subject, body] = bad[i % bad.length]!;
      flood.publish(subject, body, { reply: inbox });
    }
    const latencies: number[] = [];
    const good = ids.flatMap((id) =>
      Array.from({ length: 5 }, async () => {
        const sent = Date.now();
        const result: CommandResult = await client.execute({
          domain: 'bank',
          aggregate: 'Account',
          id,
          command: 'deposit',
          input: { amount: 1 },
        });
        latencies.push(Date.now() - sent);
        return result;
      }),
    );
    const results = await Promise.all(good);
    expect(results).toHaveLength(50);
    const deadline = Date.now() + 10_000;
    while (errorReplies < floodSize && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(errorReplies).toBe(floodSize);
    console.info(
      `flood: ${floodSize} bad requests answered in ${Date.now() - started} ms; 50 good commands alongside, slowest ${Math.max(...latencies)} ms`,
    );
    const stored = await storedCommandIds(nc, prefix, 'bank');
    expect(results.map((r) => stored.get(r.commandId))).toEqual(results.map(() => 1));
    expect([...stored.values()].reduce((sum, n) => sum + n, 0)).toBe(before + 50);
    client.close();
    await flood.close();
  });

  it('answers the state of an aggregate on the view subject', async () => {
    await raw(nc, cmd('bank.Account.view-1.open'), '{"owner":"ann"}');
    await raw(nc, cmd('bank.Account.view-1.deposit'), '{"amount":3}');
    const view = await raw(nc, `${prefix}.view.bank.Account.view-1`, '');
    expect(view).toMatchObject({
      status: 'ok',
      contentType: 'application/json',
      body: { value: 'open', version: 2, context: { owner: 'ann', balance: 3 } },
    });
    const unknown = await raw(nc, `${prefix}.view.bank.Vault.v-1`, '');
    expect(unknown).toMatchObject({ status: 'error', code: 'UNKNOWN_AGGREGATE' });
    const shape = await raw(nc, `${prefix}.view.bank.Account`, '');
    expect(shape).toMatchObject({ status: 'error', code: 'INVALID_SUBJECT' });
  });
});

describe('a command router in process', () => {
  let nc: NatsConnection;
  const silent = pino({ level: 'silent' });

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    await nc.close();
  });

  async function serve(
    prefix: string,
    maxInFlight?: number,
  ): Promise<{ node: DomainNode; router: CommandRouter; store: JetStreamEventStore }> {
    const store = await JetStreamEventStore.open({ connection: nc, prefix, logger: silent });
    const node = createNode({ domains: [bank], store, logger: silent });
    await node.start();
    const router = new CommandRouter({
      node,
      connection: nc,
      prefix,
      logger: silent,
      ...(maxInFlight === undefined ? {} : { maxInFlight }),
    });
    await router.start();
    return { node, router, store };
  }

  it('refuses commands beyond maxInFlight with the retryable OVERLOADED and stores none of them', async () => {
    const prefix = uniqueName('o');
    const { node, router, store } = await serve(prefix, 3);
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        raw(nc, `${prefix}.cmd.bank.Account.o-${i}.open`, '{"owner":"ann"}'),
      ),
    );
    const ok = replies.filter((r) => r.status === 'ok').length;
    const overloaded = replies.filter((r) => r.code === 'OVERLOADED');
    expect(ok).toBeGreaterThanOrEqual(3);
    expect(overloaded.length).toBeGreaterThan(0);
    expect(ok + overloaded.length).toBe(30);
    for (const refused of overloaded) {
      expect(refused).toMatchObject({ status: 'error', contentType: 'application/json' });
      expect(refused.body.error).toMatchObject({
        code: 'OVERLOADED',
        kind: 'infrastructure',
        details: { inFlight: 3, maxInFlight: 3 },
      });
      expect(refused.body.error.message).toContain('maxInFlight 3');
    }
    // In MessagePack too: each codec's refusal is encoded once and sent to every refused request.
    const packed = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        raw(
          nc,
          `${prefix}.cmd.bank.Account.p-${i}.open`,
          msgpack.encode({ owner: 'bob' }),
          hdrs({ 'Content-Type': 'application/msgpack' }),
        ),
      ),
    );
    const packedOk = packed.filter((r) => r.status === 'ok').length;
    const packedRefused = packed.filter((r) => r.code === 'OVERLOADED');
    expect(packedOk + packedRefused.length).toBe(30);
    for (const refused of packedRefused) {
      expect(refused.contentType).toBe('application/msgpack');
      expect(refused.body).toMatchObject({
        error: { code: 'OVERLOADED', kind: 'infrastructure', details: { maxInFlight: 3 } },
      });
    }
    // The node keeps serving once the burst is over.
    const opened = replies.findIndex((r) => r.status === 'ok');
    const after = await raw(nc, `${prefix}.cmd.bank.Account.o-${opened}.deposit`, '{"amount":5}');
    expect(after.status).toBe('ok');
    expect(await streamMessageCount(nc, prefix, 'bank')).toBe(ok + packedOk + 1);
    expect(router.endpoints().find((e) => e.name === 'cmd-bank')).toMatchObject({
      requests: 61,
      ok: ok + packedOk + 1,
      overloaded: overloaded.length + packedRefused.length,
    });
    expect(router.endpoints().find((e) => e.name === 'cmd-bank')!.lastError).toMatch(
      /^OVERLOADED: /,
    );
    await router.stop();
    await node.stop();
    await store.close();
  });

  it('does not start a command after the Jetactor-Timeout its sender gave, and answers DEADLINE_EXCEEDED', async () => {
    const prefix = uniqueName('dl');
    const store = new FaultyEventStore();
    const node = createNode({ domains: [bank], store, logger: silent });
    await node.start();
    const router = new CommandRouter({ node, connection: nc, prefix, logger: silent });
    await router.start();
    const subject = (command: string) => `${prefix}.cmd.bank.Account.dl-1.${command}`;
    await raw(nc, subject('open'), '{"owner":"ann"}');

    // The aggregate's commit hangs; a command behind it, whose sender waits 200 ms, waits longer.
    let release = () => {};
    store.beforeAppend = () => new Promise<void>((resolve) => (release = resolve));
    const held = raw(nc, subject('deposit'), '{"amount":1}', hdrs({ 'Jetactor-Command-Id': 'h' }));
    await sleep(50);
    const late = raw(
      nc,
      subject('deposit'),
      '{"amount":10}',
      hdrs({ 'Jetactor-Command-Id': 'late', 'Jetactor-Timeout': '200' }),
    );
    const inTime = raw(
      nc,
      subject('deposit'),
      '{"amount":100}',
      hdrs({ 'Jetactor-Command-Id': 'in-time', 'Jetactor-Timeout': '4000' }),
    );
    await sleep(400);
    store.beforeAppend = undefined;
    release();

    expect(await held).toMatchObject({ status: 'ok' });
    const error = await late;
    expect(error).toMatchObject({
      status: 'error',
      code: 'DEADLINE_EXCEEDED',
      body: { error: { kind: 'infrastructure', details: { commandId: 'late' } } },
    });
    expect(await inTime).toMatchObject({ status: 'ok', body: { duplicate: false } });
    const ids = store.stored.flatMap((append) => append.commands.map((record) => record.id));
    expect(ids).not.toContain('late');
    expect(ids).toEqual(expect.arrayContaining(['h', 'in-time']));
    await router.stop();
    await node.stop();
  });

  it('answers the requests it took when stopped, and takes no more', async () => {
    const prefix = uniqueName('s');
    const { node, router, store } = await serve(prefix);
    const pending = Array.from({ length: 20 }, (_, i) =>
      raw(nc, `${prefix}.cmd.bank.Account.s-${i}.open`, '{"owner":"ann"}'),
    );
    await nc.flush();
    const { inFlight } = await router.stop(5_000);
    expect(inFlight).toBe(0);
    const replies = await Promise.all(pending);
    expect(replies.every((r) => r.status === 'ok')).toBe(true);
    await expect(
      nc.request(`${prefix}.cmd.bank.Account.s-99.open`, '{"owner":"ann"}', { timeout: 2_000 }),
    ).rejects.toThrow(/no responders/i);
    expect(await streamMessageCount(nc, prefix, 'bank')).toBe(20);
    await node.stop();
    await store.close();
  });
});
