import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Account, bank } from '../domains/bank/index.js';
import {
  CommandRouter,
  InMemoryEventStore,
  JetStreamDeadLetterStore,
  JetStreamEventStore,
  JetactorError,
  KvSnapshotStore,
  LocalNatsServer,
  QueryServer,
  ServiceResponder,
  createClient,
  createNode,
  defineAggregate,
  defineDomain,
  defineProjection,
  defineQuery,
  defineReactor,
  kvReadModel,
  postgresReadModel,
  startInspector,
  type DomainNode,
} from '../runtime/index.js';
import { connectShared } from './helpers/nats.js';

/** The error `create` throws or rejects with; fails when it succeeds. */
async function errorOf(create: () => unknown): Promise<JetactorError> {
  let result: unknown;
  try {
    result = await create();
  } catch (error) {
    expect(error).toBeInstanceOf(JetactorError);
    return error as JetactorError;
  }
  return expect.unreachable(`accepted: ${String(result)}`);
}

describe('every options object of the public API', () => {
  let nc: NatsConnection;
  let node: DomainNode;

  beforeAll(async () => {
    nc = await connectShared();
    node = createNode({ domains: [bank] });
  });

  afterAll(async () => {
    await nc.close();
  });

  it('refuses an unknown option with a typed error that names it', async () => {
    const on = { 'Account.Opened': () => undefined };
    const cases: [string, () => unknown, 'config' | 'definition'][] = [
      ['createNode', () => createNode({ domains: [bank], bogus: 1 } as never), 'config'],
      ['createClient', () => createClient({ connection: nc, bogus: 1 } as never), 'config'],
      [
        'CommandRouter',
        () => new CommandRouter({ node, connection: nc, bogus: 1 } as never),
        'config',
      ],
      ['QueryServer', () => new QueryServer({ node, connection: nc, bogus: 1 } as never), 'config'],
      [
        'JetStreamEventStore',
        () => JetStreamEventStore.open({ connection: nc, bogus: 1 } as never),
        'config',
      ],
      [
        'KvSnapshotStore',
        () => new KvSnapshotStore({ connection: nc, bogus: 1 } as never),
        'config',
      ],
      ['InMemoryEventStore', () => new InMemoryEventStore({ bogus: 1 } as never), 'config'],
      [
        'JetStreamDeadLetterStore',
        () => new JetStreamDeadLetterStore({ connection: nc, bogus: 1 } as never),
        'config',
      ],
      [
        'ServiceResponder',
        () =>
          new ServiceResponder({
            connection: nc,
            name: 'svc',
            version: '1.0.0',
            endpoints: () => [],
            bogus: 1,
          } as never),
        'config',
      ],
      ['LocalNatsServer', () => LocalNatsServer.start({ bogus: 1 } as never), 'config'],
      ['startInspector', () => startInspector({ node, bogus: 1 } as never), 'config'],
      [
        'defineAggregate',
        () =>
          defineAggregate({
            name: Account.name,
            events: Account.events,
            machine: Account.machine,
            commands: () => ({}),
            bogus: 1,
          } as never),
        'definition',
      ],
      [
        'defineDomain',
        () => defineDomain({ name: 'shop', aggregates: [Account], bogus: 1 } as never),
        'definition',
      ],
      [
        'defineReactor',
        () => defineReactor({ name: 'r', aggregates: [Account], on, bogus: 1 } as never),
        'definition',
      ],
      [
        'defineProjection',
        () => defineProjection({ name: 'p', aggregates: [Account], on, bogus: 1 } as never),
        'definition',
      ],
      [
        'defineQuery',
        () => defineQuery({ name: 'q', input: z.object({}), handler: () => 1, bogus: 1 } as never),
        'definition',
      ],
      ['kvReadModel', () => kvReadModel({ bogus: 1 } as never), 'definition'],
      [
        'postgresReadModel',
        () => postgresReadModel({ migrate: 'CREATE TABLE t (x int)', bogus: 1 } as never),
        'definition',
      ],
    ];
    for (const [name, create, kind] of cases) {
      const error = await errorOf(create);
      expect(error.kind, `${name}: ${error.message}`).toBe(kind);
      expect(error.code, name).toBe(kind === 'config' ? 'INVALID_OPTIONS' : 'INVALID_DEFINITION');
      expect(error.message, name).toContain('bogus');
    }
  });

  it('refuses a misspelt option instead of quietly using the default', async () => {
    const snapshots = await errorOf(
      () => new KvSnapshotStore({ connection: nc, prefx: 'shop' } as never),
    );
    expect(snapshots.message).toBe(
      'Snapshot store: unknown option "prefx"; the known ones are connection, prefix, replicas, codec, timeoutMs, retryAfterMs, clock.',
    );
    const reactor = await errorOf(() =>
      defineReactor({
        name: 'audit',
        aggregates: [Account],
        on: { 'Account.Opened': () => undefined },
        deadletters: 'wait',
      } as never),
    );
    expect(reactor.message).toContain('Reactor "audit": unknown option "deadletters"');
    expect(reactor.message).toContain('deadLetters');
  });
});
