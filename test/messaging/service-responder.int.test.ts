import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import {
  CommandRouter,
  ConfigError,
  JetStreamEventStore,
  ServiceResponder,
  createClient,
  createNode,
  createNodeService,
  type DomainNode,
  type ServiceInfo,
  type ServicePing,
  type ServiceStats,
} from '../../runtime/index.js';
import { connectShared, uniqueName } from '../helpers/nats.js';

const silent = pino({ level: 'silent' });

describe('the service responder of a node', () => {
  let nc: NatsConnection;
  let node: DomainNode;
  let router: CommandRouter;
  let store: JetStreamEventStore;
  let service: ServiceResponder;
  const prefix = uniqueName('svc');

  beforeAll(async () => {
    nc = await connectShared();
    store = await JetStreamEventStore.open({ connection: nc, prefix, logger: silent });
    node = createNode({ domains: [bank], store, logger: silent });
    await node.start();
    router = new CommandRouter({ node, connection: nc, prefix, logger: silent });
    await router.start();
    service = createNodeService({ connection: nc, node, router, prefix, version: '1.2.3' });
    await service.start();
  });

  afterAll(async () => {
    await service.stop();
    await router.stop();
    await node.stop();
    await store.close();
    await nc.close();
  });

  async function ask<T>(subject: string): Promise<T[]> {
    const replies: T[] = [];
    for await (const msg of await nc.requestMany(subject, '', { maxWait: 300 })) {
      replies.push(msg.json<T>());
    }
    return replies;
  }

  it('answers $SRV.PING in all three forms, as `nats micro ls` asks', async () => {
    const expected = {
      type: 'io.nats.micro.v1.ping_response',
      name: prefix,
      id: service.id,
      version: '1.2.3',
      metadata: { runtime: 'jetactor', prefix, domains: 'bank' },
    };
    const everyone = await ask<ServicePing>('$SRV.PING');
    expect(everyone.filter((p) => p.id === service.id)).toMatchObject([expected]);
    expect(await ask<ServicePing>(`$SRV.PING.${prefix}`)).toMatchObject([expected]);
    expect(await ask<ServicePing>(`$SRV.PING.${prefix}.${service.id}`)).toMatchObject([expected]);
    await expect(ask<ServicePing>(`$SRV.PING.${prefix}.someone-else`)).rejects.toThrow(
      /no responders/,
    );
  });

  it('describes its endpoints on $SRV.INFO', async () => {
    const [info] = await ask<ServiceInfo>(`$SRV.INFO.${prefix}`);
    expect(info).toMatchObject({
      type: 'io.nats.micro.v1.info_response',
      description: 'jetactor node hosting bank',
      endpoints: [
        {
          name: 'cmd-bank',
          subject: `${prefix}.cmd.bank.>`,
          queue_group: `${prefix}.cmd.bank`,
          metadata: { domain: 'bank', kind: 'command' },
        },
        { name: 'view-bank', subject: `${prefix}.view.bank.>`, queue_group: `${prefix}.view.bank` },
      ],
    });
  });

  it('reports command counts and active actors on $SRV.STATS', async () => {
    const client = createClient({ connection: nc, prefix, domains: [bank] });
    await client.aggregate(Account, 'st-1').open({ owner: 'ann' });
    await client.aggregate(Account, 'st-1').deposit({ amount: 1 });
    await client
      .aggregate(Account, 'st-1')
      .withdraw({ amount: 99 })
      .catch(() => undefined);
    client.close();
    const [stats] = await ask<ServiceStats>(`$SRV.STATS.${prefix}.${service.id}`);
    expect(stats?.type).toBe('io.nats.micro.v1.stats_response');
    expect(Date.parse(stats!.started)).toBeGreaterThan(0);
    const commands = stats!.endpoints.find((e) => e.name === 'cmd-bank');
    expect(commands).toMatchObject({
      num_requests: 3,
      num_errors: 1,
      last_error: expect.stringContaining('INSUFFICIENT_FUNDS') as unknown,
      data: { ok: 2, rejected: 1, failed: 0, actors: { active: 1 } },
    });
    expect(commands?.data?.memory).toMatchObject({
      heapUsedBytes: expect.any(Number) as unknown,
      rssBytes: expect.any(Number) as unknown,
    });
    expect(commands!.processing_time).toBeGreaterThan(0);
    expect(commands!.average_processing_time).toBe(Math.round(commands!.processing_time / 3));
  });

  it('checks its options', () => {
    const base = { connection: nc, name: 'svc', version: '1.0.0', endpoints: () => [] };
    expect(() => new ServiceResponder({ ...base, name: 'a.b' })).toThrow(ConfigError);
    expect(() => new ServiceResponder({ ...base, version: 'one' })).toThrow(/semantic version/);
  });
});
