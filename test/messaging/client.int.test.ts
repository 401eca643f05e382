import { headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { Aircraft, flight } from '../../domains/flight/index.js';
import {
  CommandRouter,
  ConfigError,
  DomainError,
  InfrastructureError,
  JetStreamEventStore,
  JsonCodec,
  RejectionError,
  createClient,
  createNode,
  isInfrastructureError,
  isRejectionError,
  type CommandResult,
  type DomainNode,
  type JetactorClient,
} from '../../runtime/index.js';
import { connectShared, uniqueName } from '../helpers/nats.js';
import { rejectionOf } from '../fixtures/test-support.js';
import { storedCommandIds } from '../fixtures/stream-contents.js';

const silent = pino({ level: 'silent' });

describe('the client', () => {
  let nc: NatsConnection;
  let node: DomainNode;
  let router: CommandRouter;
  let store: JetStreamEventStore;
  let client: JetactorClient;
  const prefix = uniqueName('c');

  beforeAll(async () => {
    nc = await connectShared();
    store = await JetStreamEventStore.open({ connection: nc, prefix, logger: silent });
    node = createNode({ domains: [bank, flight], store, logger: silent });
    await node.start();
    router = new CommandRouter({ node, connection: nc, prefix, logger: silent });
    await router.start();
    client = createClient({ connection: nc, prefix, domains: [bank, flight], timeoutMs: 2_000 });
  });

  afterAll(async () => {
    client.close();
    await router.stop();
    await node.stop();
    await store.close();
    await nc.close();
  });

  it('sends typed commands and returns typed results', async () => {
    const account = client.aggregate(Account, 'typed-1');
    const opened = await account.open({ owner: 'ann' });
    expect(opened).toMatchObject({ version: 1, duplicate: false, events: [{ type: 'Opened' }] });
    const deposited: CommandResult<{ balance: number }> = await account.deposit({ amount: 10 });
    expect(deposited.response.balance).toBe(10);
    const landed = await client.aggregate(Aircraft, 'F-1').takeOff({});
    expect(landed.version).toBe(1);
    const view = await client.view(Account, 'typed-1');
    expect(view).toMatchObject({ value: 'open', version: 2, context: { balance: 10 } });
  });

  it('checks command names, inputs and responses at compile time', () => {
    // Never called: the compiler checks these lines (npm run typecheck).
    const typeChecks = async () => {
      const account = client.aggregate(Account, 'types');
      // @ts-expect-error: Account has no command "fly"
      await account.fly({});
      // @ts-expect-error: amount is a number
      await account.deposit({ amount: 'ten' });
      // @ts-expect-error: open needs an owner
      await account.open({});
      const result = await account.withdraw(
        { amount: 1 },
        { commandId: 'w-1', expectedVersion: 3 },
      );
      const balance: number = result.response.balance;
      // @ts-expect-error: the response of withdraw has no field "owner"
      const owner: string = result.response.owner;
      // @ts-expect-error: expectedVersion is a number
      await account.deposit({ amount: 1 }, { expectedVersion: 'latest' });
      return [balance, owner];
    };
    expect(typeof typeChecks).toBe('function');
  });

  it('throws the same typed errors as a node in the same process', async () => {
    const account = client.aggregate(Account, 'errors-1');
    await account.open({ owner: 'ann' });
    const poor = await rejectionOf(account.withdraw({ amount: 50 }));
    expect(poor).toBeInstanceOf(DomainError);
    expect(poor).toMatchObject({
      code: 'INSUFFICIENT_FUNDS',
      kind: 'rejection',
      details: { balance: 0, amount: 50 },
    });
    const invalid = await rejectionOf(account.deposit({ amount: -1 }));
    expect(invalid).toBeInstanceOf(RejectionError);
    expect(invalid.code).toBe('VALIDATION_FAILED');
    expect(invalid.details).toMatchObject({ issues: [{ path: ['amount'] }] });
    const stale = await rejectionOf(account.deposit({ amount: 1 }, { expectedVersion: 7 }));
    expect(stale).toMatchObject({ code: 'WRONG_EXPECTED_VERSION', details: { expected: 7 } });
    const local = await node
      .aggregate(Account, 'errors-1')
      .withdraw({ amount: 50 })
      .catch((e: unknown) => e);
    expect(Object.getPrototypeOf(poor)).toBe(Object.getPrototypeOf(local));
    expect(isRejectionError(poor)).toBe(true);
  });

  it('answers a resent command id with the first result, stored once', async () => {
    const account = client.aggregate(Account, 'idem-1');
    await account.open({ owner: 'ann' });
    const first = await account.deposit({ amount: 5 }, { commandId: 'dep-idem' });
    const again = await account.deposit({ amount: 5 }, { commandId: 'dep-idem' });
    expect(again).toMatchObject({ commandId: 'dep-idem', version: first.version, duplicate: true });
    expect((await storedCommandIds(nc, prefix, 'bank')).get('dep-idem')).toBe(1);
  });

  it('refuses a bad id or a missing domain without sending anything', async () => {
    const bad = await rejectionOf(client.aggregate(Account, 'a.b').deposit({ amount: 1 }));
    expect(bad.code).toBe('INVALID_ID');
    const lonely = createClient({ connection: nc, prefix });
    const noDomain = await rejectionOf(lonely.aggregate(Account, 'x').deposit({ amount: 1 }));
    expect(noDomain.code).toBe('INVALID_COMMAND');
    expect(noDomain.message).toContain('createClient({ domains');
    const named = await lonely.aggregate(Account, 'named-1', 'bank').open({ owner: 'ann' });
    expect(named.version).toBe(1);
    lonely.close();
    // A request that cannot be sent is a rejected promise, never a throw.
    let sent: Promise<unknown> = Promise.resolve();
    expect(() => {
      sent = client.execute({
        domain: 'bank',
        aggregate: 'Account',
        id: 'line-1',
        command: 'deposit',
        input: { amount: 1 },
        commandId: 'a\nb',
      });
    }).not.toThrow();
    const broken = await rejectionOf(sent);
    expect(broken.code).toBe('INVALID_COMMAND');
    expect(broken.message).toContain('commandId');
  });

  it('works with JSON as its codec', async () => {
    const json = createClient({ connection: nc, prefix, codec: new JsonCodec() });
    const result = await json.execute({
      domain: 'bank',
      aggregate: 'Account',
      id: 'json-1',
      command: 'open',
      input: { owner: 'ann' },
    });
    expect(result.version).toBe(1);
    json.close();
  });

  it('validates its options', () => {
    expect(() => createClient({ connection: nc, prefix: 'a.b' })).toThrow(ConfigError);
    expect(() => createClient({ connection: nc, retries: -1 })).toThrow(/retries/);
    expect(() => createClient({ connection: nc, retryBudget: { maxTokens: 1 } })).toThrow(
      /retryBudget\.maxTokens/,
    );
    expect(() => createClient({ connection: nc, retryBudget: { tokenRatio: 0 } })).toThrow(
      /retryBudget\.tokenRatio/,
    );
    expect(() => createClient({ connection: nc, retryBudget: true as unknown as false })).toThrow(
      ConfigError,
    );
  });
});

/** A node's refusal, as a stand-in sends it in JSON. */
const OVERLOADED_REPLY = new TextEncoder().encode(
  JSON.stringify({ error: { code: 'OVERLOADED', message: 'busy', kind: 'infrastructure' } }),
);

describe('the client when replies go missing', () => {
  let nc: NatsConnection;
  let node: DomainNode;
  let router: CommandRouter;
  let store: JetStreamEventStore;
  const prefix = uniqueName('cr');

  beforeAll(async () => {
    nc = await connectShared();
    store = await JetStreamEventStore.open({ connection: nc, prefix, logger: silent });
    node = createNode({ domains: [bank], store, logger: silent });
    await node.start();
    router = new CommandRouter({ node, connection: nc, prefix, logger: silent });
    await router.start();
  });

  afterAll(async () => {
    await router.stop();
    await node.stop();
    await store.close();
    await nc.close();
  });

  /**
   * A stand-in for the nodes on prefix `front`: passes each request on to the real router and
   * lets `decide` drop its reply, replace it, or pass it back.
   */
  function proxy(
    front: string,
    decide: (attempt: number, msg: Msg, reply: Msg) => 'drop' | 'pass' | Uint8Array,
  ): { seen: { commandId: string | undefined }[]; close: () => void } {
    const seen: { commandId: string | undefined }[] = [];
    const sub = nc.subscribe(`${front}.cmd.>`, {
      callback: (_error, msg) => {
        seen.push({ commandId: msg.headers?.get('Jetactor-Command-Id') });
        const attempt = seen.length;
        const subject = `${prefix}${msg.subject.slice(front.length)}`;
        void nc
          .request(subject, msg.data, {
            timeout: 5_000,
            ...(msg.headers ? { headers: msg.headers } : {}),
          })
          .then((reply) => {
            const what = decide(attempt, msg, reply);
            if (what === 'pass') msg.respond(reply.data, { headers: reply.headers! });
            else if (what !== 'drop') {
              const h = headers();
              h.set('Content-Type', 'application/json');
              h.set('Jetactor-Status', 'error');
              msg.respond(what, { headers: h });
            }
          });
      },
    });
    return { seen, close: () => sub.unsubscribe() };
  }

  it('retries a command whose reply was lost with the same command id, and it is applied once', async () => {
    const front = uniqueName('f');
    await createClient({ connection: nc, prefix }).aggregate(Account, 'lost-1', 'bank').open({
      owner: 'ann',
    });
    const stub = proxy(front, (attempt) => (attempt === 1 ? 'drop' : 'pass'));
    const client = createClient({
      connection: nc,
      prefix: front,
      timeoutMs: 300,
      retries: 2,
      backoffMs: 10,
    });
    const result = await client.aggregate(Account, 'lost-1', 'bank').deposit({ amount: 5 });
    expect(stub.seen).toHaveLength(2);
    expect(stub.seen[0]!.commandId).toBeDefined();
    expect(stub.seen[1]!.commandId).toBe(stub.seen[0]!.commandId);
    expect(result).toMatchObject({
      commandId: stub.seen[0]!.commandId,
      duplicate: true,
      version: 2,
    });
    expect((await storedCommandIds(nc, prefix, 'bank')).get(result.commandId)).toBe(1);
    stub.close();
    client.close();
  });

  it('retries retryable errors with backoff and the same command id', async () => {
    const front = uniqueName('f');
    const stub = proxy(front, (attempt) => (attempt < 3 ? OVERLOADED_REPLY : 'pass'));
    const client = createClient({ connection: nc, prefix: front, retries: 3, backoffMs: 5 });
    const result = await client.aggregate(Account, 'busy-1', 'bank').open({ owner: 'ann' });
    expect(result.version).toBe(1);
    expect(new Set(stub.seen.map((s) => s.commandId)).size).toBe(1);
    expect(stub.seen).toHaveLength(3);
    stub.close();
    client.close();
  });

  /** Sends `count` opens at once through a client on `front`, whose stand-in refuses them all. */
  async function refusedOpens(
    front: string,
    count: number,
    retryBudget: { maxTokens: number } | false,
  ): Promise<{ codes: string[]; sent: number }> {
    const stub = proxy(front, () => OVERLOADED_REPLY);
    const client = createClient({
      connection: nc,
      prefix: front,
      retries: 3,
      backoffMs: 1,
      retryBudget,
    });
    const errors = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        rejectionOf(client.aggregate(Account, `${front}-${i}`, 'bank').open({ owner: 'ann' })),
      ),
    );
    stub.close();
    client.close();
    return { codes: errors.map((error) => error.code), sent: stub.seen.length };
  }

  it('stops retrying once most tries fail (its retry budget), so a refusing node is not sent every request again', async () => {
    const { codes, sent } = await refusedOpens(uniqueName('f'), 40, { maxTokens: 10 });
    // Every caller gets the node's error; of the 40 × 3 retries, only those made while more than
    // half of the 10 tokens were left were sent: 4 (tokens 9, 8, 7, 6), then none.
    expect(new Set(codes)).toEqual(new Set(['OVERLOADED']));
    expect(sent).toBe(40 + 4);
  });

  it('retries every failed try without a retry budget (retryBudget: false)', async () => {
    const { codes, sent } = await refusedOpens(uniqueName('f'), 10, false);
    expect(new Set(codes)).toEqual(new Set(['OVERLOADED']));
    expect(sent).toBe(10 * 4);
  });

  it('earns retries back with answered requests', async () => {
    const front = uniqueName('f');
    // Refuses requests 1–4 and 13, passes the others on to the node.
    const stub = proxy(front, (attempt) =>
      attempt <= 4 || attempt === 13 ? OVERLOADED_REPLY : 'pass',
    );
    const client = createClient({
      connection: nc,
      prefix: front,
      retries: 1,
      backoffMs: 1,
      retryBudget: { maxTokens: 4, tokenRatio: 0.5 },
    });
    const open = (id: string) => client.aggregate(Account, id, 'bank').open({ owner: 'ann' });
    // Tokens 4 → 3: retried (3 > 2), the retry fails too (→ 2); then 2 → 1 and 1 → 0: not retried.
    for (const id of ['earn-1', 'earn-2', 'earn-3']) {
      expect((await rejectionOf(open(id))).code).toBe('OVERLOADED');
    }
    expect(stub.seen).toHaveLength(4);
    // Eight answered commands give back 8 × 0.5 tokens: 0 → 4.
    for (let i = 0; i < 8; i++) await open(`earned-${i}`);
    expect(stub.seen).toHaveLength(12);
    // Request 13 is refused and retried again (4 → 3 > 2), and its retry is answered.
    expect((await open('earn-again')).version).toBe(1);
    expect(stub.seen).toHaveLength(14);
    stub.close();
    client.close();
  });

  it('does not retry rejections', async () => {
    const front = uniqueName('f');
    const stub = proxy(front, () => 'pass');
    const client = createClient({ connection: nc, prefix: front, retries: 3, backoffMs: 5 });
    const error = await rejectionOf(
      client.aggregate(Account, 'nobody', 'bank').withdraw({ amount: 1 }),
    );
    expect(error.code).toBe('INVALID_TRANSITION');
    expect(stub.seen).toHaveLength(1);
    stub.close();
    client.close();
  });

  it('gives up with REQUEST_TIMEOUT naming the command id when no reply ever comes', async () => {
    const front = uniqueName('f');
    const stub = proxy(front, () => 'drop');
    const client = createClient({
      connection: nc,
      prefix: front,
      timeoutMs: 100,
      retries: 2,
      backoffMs: 5,
    });
    const error = await rejectionOf(
      client.aggregate(Account, 'void-1', 'bank').open({ owner: 'ann' }, { commandId: 'open-v' }),
    );
    expect(error).toBeInstanceOf(InfrastructureError);
    expect(error).toMatchObject({ code: 'REQUEST_TIMEOUT', details: { attempts: 3 } });
    expect(error.message).toContain('open-v');
    expect(stub.seen.map((s) => s.commandId)).toEqual(['open-v', 'open-v', 'open-v']);
    stub.close();
    client.close();
  });

  it('reports NO_RESPONDERS after its retries when no node hosts the domain', async () => {
    const client = createClient({ connection: nc, prefix, retries: 1, backoffMs: 5 });
    const error = await rejectionOf(
      client.execute({ domain: 'shop', aggregate: 'Cart', id: 'c-1', command: 'add', input: {} }),
    );
    expect(isInfrastructureError(error)).toBe(true);
    expect(error.code).toBe('NO_RESPONDERS');
    expect(error.message).toContain('"shop"');
    client.close();
  });

  it('reports INVALID_REPLY for a reply that is not a jetactor reply', async () => {
    const front = uniqueName('f');
    const sub = nc.subscribe(`${front}.cmd.>`, {
      callback: (_e, msg) => {
        msg.respond('hello');
      },
    });
    const client = createClient({ connection: nc, prefix: front, retries: 3 });
    const error = await rejectionOf(
      client.aggregate(Account, 'odd-1', 'bank').open({ owner: 'ann' }),
    );
    expect(error.code).toBe('INVALID_REPLY');
    sub.unsubscribe();
    client.close();
  });
});
