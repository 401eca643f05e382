import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  DefinitionError,
  InMemoryEventStore,
  InfrastructureError,
  RejectionError,
  TestClock,
  createNode,
  defineDomain,
  isConfigError,
  isInfrastructureError,
  isRejectionError,
  type CommandRequest,
  type NodeOptions,
} from '../../runtime/index.js';
import { Account, bank } from '../../domains/bank/index.js';
import { Aircraft, flight } from '../../domains/flight/index.js';
import { FaultyEventStore } from '../fixtures/faulty-event-store.js';
import {
  captureLogger,
  deferred,
  flush,
  readEvents,
  rejectionOf,
  silentLogger,
} from '../fixtures/test-support.js';

function start(options: Partial<NodeOptions> = {}) {
  const clock = options.clock instanceof TestClock ? options.clock : new TestClock();
  const store = options.store instanceof FaultyEventStore ? options.store : new FaultyEventStore();
  const node = createNode({
    domains: [bank, flight],
    logger: silentLogger,
    ...options,
    clock,
    store,
  });
  return { node, store, clock };
}

function configErrorOf(create: () => unknown): ConfigError {
  try {
    create();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect(isConfigError(error)).toBe(true);
    return error as ConfigError;
  }
  return expect.unreachable('expected a ConfigError');
}

const good = { aggregate: 'Account', id: 'acc-1', command: 'deposit', input: { amount: 5 } };

const badRequests: { what: string; request: unknown; code: string; says: string }[] = [
  {
    what: 'an unknown domain',
    request: { ...good, domain: 'casino' },
    code: 'UNKNOWN_DOMAIN',
    says: 'hosts no domain "casino"; it hosts: bank, flight',
  },
  {
    what: 'an unknown aggregate',
    request: { ...good, aggregate: 'Vault' },
    code: 'UNKNOWN_AGGREGATE',
    says: 'known: bank.Account, bank.Transfer, flight.Aircraft',
  },
  {
    what: 'an aggregate of another domain',
    request: { ...good, domain: 'flight' },
    code: 'UNKNOWN_AGGREGATE',
    says: 'Domain "flight" has no aggregate "Account"',
  },
  {
    what: 'an unknown command',
    request: { ...good, command: 'transfer' },
    code: 'UNKNOWN_COMMAND',
    says: 'its commands: open, deposit, withdraw, freeze, unfreeze, close',
  },
  {
    what: 'a command named like an Object property',
    request: { ...good, command: 'toString' },
    code: 'UNKNOWN_COMMAND',
    says: '"toString"',
  },
  {
    what: 'input failing the schema',
    request: { ...good, input: { amount: 2.5 } },
    code: 'VALIDATION_FAILED',
    says: 'Input of Account.deposit is invalid: amount:',
  },
  {
    what: 'missing input',
    request: { ...good, input: undefined },
    code: 'VALIDATION_FAILED',
    says: '(input)',
  },
  { what: 'an empty id', request: { ...good, id: '' }, code: 'INVALID_ID', says: 'it is empty' },
  { what: 'an id with a dot', request: { ...good, id: 'acc.1' }, code: 'INVALID_ID', says: '"."' },
  {
    what: 'an id with a space',
    request: { ...good, id: 'acc 1' },
    code: 'INVALID_ID',
    says: '" "',
  },
  { what: 'a wildcard id', request: { ...good, id: '*' }, code: 'INVALID_ID', says: '"*"' },
  { what: 'a tail wildcard id', request: { ...good, id: 'a>' }, code: 'INVALID_ID', says: '">"' },
  {
    what: 'an over-long id',
    request: { ...good, id: 'x'.repeat(257) },
    code: 'INVALID_ID',
    says: '257 characters',
  },
  {
    what: 'an id that is not a string',
    request: { ...good, id: 42 },
    code: 'INVALID_ID',
    says: '42',
  },
  {
    what: 'an empty command id',
    request: { ...good, commandId: '' },
    code: 'INVALID_COMMAND',
    says: 'commandId',
  },
  {
    what: 'a negative expectedVersion',
    request: { ...good, expectedVersion: -1 },
    code: 'INVALID_COMMAND',
    says: 'expectedVersion',
  },
  { what: 'no object at all', request: null, code: 'INVALID_COMMAND', says: 'got null' },
];

describe('domain node', () => {
  describe('options', () => {
    it('refuses wrong options with INVALID_OPTIONS naming each path', () => {
      const error = configErrorOf(() =>
        createNode({
          domains: [],
          supervisor: { maxBatch: 0, idleTimeoutMs: -1 },
        }),
      );
      expect(error.code).toBe('INVALID_OPTIONS');
      expect(error.message).toContain('domains: host at least one domain');
      expect(error.message).toContain('supervisor.maxBatch');
      expect(error.message).toContain('supervisor.idleTimeoutMs');
      expect(error.details).toMatchObject({ issues: expect.any(Array) as unknown });
    });

    it('refuses unknown options and things that are not what they claim', () => {
      const unknown = configErrorOf(() =>
        createNode({ domains: [bank], supervisor: { maxActors: 5 } as never }),
      );
      expect(unknown.message).toContain('maxActors');
      const store = configErrorOf(() => createNode({ domains: [bank], store: {} as never }));
      expect(store.message).toContain('store: expected an EventStore');
      const domain = configErrorOf(() => createNode({ domains: [Account as never] }));
      expect(domain.message).toContain('expected a domain made with defineDomain');
    });
  });

  describe('bad commands', () => {
    it.each(badRequests)(
      'rejects $what with $code, stores nothing and keeps serving',
      async ({ request, code, says }) => {
        const { node, store } = start();
        await node.aggregate(Account, 'acc-1').open({ owner: 'ann' });
        const calls = store.appendCalls;

        let pending: Promise<unknown> | undefined;
        expect(() => (pending = node.execute(request as CommandRequest))).not.toThrow();
        const error = await rejectionOf(pending ?? Promise.resolve());
        expect(error).toBeInstanceOf(RejectionError);
        expect(isRejectionError(error)).toBe(true);
        expect(error.retryable).toBe(false);
        expect(error.code).toBe(code);
        expect(error.message).toContain(says);

        expect(store.appendCalls).toBe(calls);
        expect(store.stored).toHaveLength(1);
        const reply = await node.execute(good);
        expect(reply).toMatchObject({ version: 2, response: { balance: 5 } });
      },
    );

    it('puts the zod issues of failing input in the details', async () => {
      const { node } = start();
      const error = await rejectionOf(
        node.execute({ ...good, command: 'open', input: { owner: '', overdraftLimit: -1 } }),
      );
      expect(error.code).toBe('VALIDATION_FAILED');
      expect(error.details).toMatchObject({
        issues: [
          { path: ['owner'], code: 'too_small' },
          { path: ['overdraftLimit'], code: 'too_small' },
        ],
      });
    });

    it('asks for the domain when two hosted domains have the aggregate', async () => {
      const twin = defineDomain({ name: 'bank2', aggregates: [Account] });
      const { node } = start({ domains: [bank, twin] });
      const error = await rejectionOf(
        node.execute({ ...good, command: 'open', input: { owner: 'a' } }),
      );
      expect(error.code).toBe('AMBIGUOUS_AGGREGATE');
      expect(error.message).toContain('bank and bank2');
      expect(() => node.aggregate(Account, 'acc-1')).toThrow(RejectionError);

      await node.aggregate(Account, 'acc-1', 'bank2').open({ owner: 'a' });
      const reply = await node.execute({ ...good, domain: 'bank2' });
      expect(reply.events[0]?.meta.domain).toBe('bank2');
      expect((await node.view(Account, 'acc-1', 'bank')).version).toBe(0);
    });
  });

  it('gives typed calls for an aggregate it hosts, and refuses one it does not', async () => {
    const { node } = start({ domains: [flight] });
    const reply = await node.aggregate(Aircraft, 'F-GKXA').takeOff({});
    expect(reply.version).toBe(1);
    expect(() => node.aggregate(Account, 'acc-1')).toThrow(DefinitionError);
  });

  it('hosts several domains side by side, each with its own aggregates and positions', async () => {
    const { node, store } = start();
    await node.aggregate(Account, 'same-id').open({ owner: 'ann' });
    await node.aggregate(Aircraft, 'same-id').takeOff({});
    await node.execute({
      domain: 'flight',
      aggregate: 'Aircraft',
      id: 'same-id',
      command: 'land',
      input: { airport: 'CDG' },
    });

    const banked = await readEvents(store, { domain: 'bank', aggregate: 'Account', id: 'same-id' });
    const flown = await readEvents(store, {
      domain: 'flight',
      aggregate: 'Aircraft',
      id: 'same-id',
    });
    expect(banked.map((e) => e.type)).toEqual(['Opened']);
    expect(flown.map((e) => e.type)).toEqual(['TakenOff', 'Landed']);
    expect(await node.view(Aircraft, 'same-id')).toMatchObject({
      value: 'onGround',
      context: { airport: 'CDG', flights: 1 },
      version: 2,
    });
  });

  describe('view', () => {
    it('shows an aggregate that has no events in its initial state at version 0', async () => {
      const { node } = start();
      expect(await node.view('Account', 'nobody')).toEqual({
        lifecycle: 'ready',
        value: 'new',
        context: { owner: '', balance: 0, overdraftLimit: 0 },
        version: 0,
        position: 0,
        mailboxDepth: 0,
      });
    });

    it('rejects an invalid id or an unknown aggregate', async () => {
      const { node } = start();
      expect((await rejectionOf(node.view(Account, 'a.b'))).code).toBe('INVALID_ID');
      expect((await rejectionOf(node.view('Vault', 'v-1'))).code).toBe('UNKNOWN_AGGREGATE');
    });
  });

  describe('stop', () => {
    it('lets in-flight and queued commands finish and refuses new ones with SHUTTING_DOWN', async () => {
      const { node, store } = start();
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const hold = deferred();
      store.beforeAppend = () => hold.promise;
      const inFlight = ref.deposit({ amount: 1 });
      await flush();
      const queued = [ref.deposit({ amount: 2 }), ref.deposit({ amount: 3 })];

      const stopping = node.stop(1_000);
      const refused = await rejectionOf(ref.deposit({ amount: 4 }));
      expect(refused).toBeInstanceOf(InfrastructureError);
      expect(isInfrastructureError(refused)).toBe(true);
      expect(refused.code).toBe('SHUTTING_DOWN');
      expect(refused.retryable).toBe(true);

      hold.resolve();
      const replies = await Promise.all([inFlight, ...queued]);
      expect(replies.map((r) => r.version)).toEqual([2, 3, 4]);
      expect(await stopping).toEqual({ interrupted: 0 });
      expect(node.stats()).toMatchObject({ active: 0, passivated: 1 });
      expect((await rejectionOf(node.view(Account, 'acc-1'))).code).toBe('SHUTTING_DOWN');
      expect(store.stored).toHaveLength(3);
    });

    it('rejects what is still queued after timeoutMs with SHUTTING_DOWN and logs it', async () => {
      const { logger, records } = captureLogger();
      const { node, store, clock } = start({ logger });
      const ref = node.aggregate(Account, 'acc-1');
      await ref.open({ owner: 'ann' });
      const hold = deferred();
      store.beforeAppend = () => hold.promise;
      const inFlight = ref.deposit({ amount: 1 });
      await flush();
      const queued = [ref.deposit({ amount: 2 }), ref.deposit({ amount: 3 })];

      const stopping = node.stop(1_000);
      await flush();
      clock.advance(999);
      await flush();
      expect(node.stats().mailboxDepth).toBe(2);
      clock.advance(1);

      expect(await stopping).toEqual({ interrupted: 2 });
      for (const command of queued) {
        expect((await rejectionOf(command)).code).toBe('SHUTTING_DOWN');
      }
      const warning = records.find((r) => String(r.msg).startsWith('shutdown interrupted'));
      expect(warning).toMatchObject({ rejected: 2, commitInFlight: true });

      hold.resolve();
      expect((await inFlight).version).toBe(2);
      expect(store.stored).toHaveLength(2);
    });

    it('closes the store it made itself, not one it was given', async () => {
      const given = new InMemoryEventStore();
      const withGiven = createNode({ domains: [bank], store: given, logger: silentLogger });
      await withGiven.aggregate(Account, 'acc-1').open({ owner: 'ann' });
      await withGiven.stop();
      await expect(
        readEvents(given, { domain: 'bank', aggregate: 'Account', id: 'acc-1' }),
      ).resolves.toHaveLength(1);

      const owning = createNode({ domains: [bank], logger: silentLogger });
      await owning.aggregate(Account, 'acc-1').open({ owner: 'ann' });
      await owning.stop();
      const closed = await rejectionOf(
        readEvents(owning.store, { domain: 'bank', aggregate: 'Account', id: 'acc-1' }),
      );
      expect(closed.code).toBe('STORE_CLOSED');
    });
  });
});
