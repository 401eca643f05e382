import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JetStreamEventStore,
  isConfigError,
  isConflictError,
  isInfrastructureError,
  type AppendRequest,
  type Commit,
  type StoredEvent,
  type StreamRef,
} from '../../runtime/index.js';
import { connectShared, startNatsServer, uniqueName } from '../helpers/nats.js';
import { expectReplicasRefused } from '../fixtures/test-support.js';
import { eventStoreContract } from './event-store.contract.js';

function event(stream: StreamRef, version: number, commandId: string): StoredEvent {
  return {
    type: 'Deposited',
    data: { amount: version },
    meta: {
      domain: stream.domain,
      aggregate: stream.aggregate,
      aggregateId: stream.id,
      version,
      timestamp: 1_700_000_000_000 + version,
      commandId,
      correlationId: commandId,
      causationId: commandId,
    },
  };
}

function request(stream: StreamRef, expectedPosition: number, version: number): AppendRequest {
  const id = `${stream.id}-c${version}`;
  return {
    stream,
    expectedPosition,
    dedupId: id,
    events: [event(stream, version, id)],
    commands: [{ id }],
  };
}

async function readAll(
  store: JetStreamEventStore,
  stream: StreamRef,
  after = 0,
): Promise<Commit[]> {
  const commits: Commit[] = [];
  for await (const commit of store.read(stream, after)) commits.push(commit);
  return commits;
}

describe('JetStream event store', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    nc = await connectShared();
    jsm = await jetstreamManager(nc);
  });

  afterAll(async () => {
    await nc.close();
  });

  it('creates one file-storage stream per domain with the event subjects', async () => {
    const prefix = uniqueName('js');
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    await store.ensureDomains(['bank', 'flight']);
    const info = await jsm.streams.info(`${prefix}_bank`);
    expect(info.config.subjects).toEqual([`${prefix}.evt.bank.>`]);
    expect(info.config.storage).toBe('file');
    expect(info.config.allow_direct).toBe(true);
    expect(info.config.duplicate_window).toBe(120_000 * 1_000_000);
    expect((await jsm.streams.info(`${prefix}_flight`)).config.subjects).toEqual([
      `${prefix}.evt.flight.>`,
    ]);
    await store.close();
  });

  it('reports an existing stream whose settings conflict, and leaves it unchanged', async () => {
    const prefix = uniqueName('js');
    await jsm.streams.add({
      name: `${prefix}_bank`,
      subjects: [`${prefix}.evt.bank.>`],
      storage: 'memory',
      max_age: 60_000_000_000,
    });
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const error = await store.ensureDomains(['bank']).catch((e: unknown) => e);
    expect(isConfigError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'STREAM_CONFIG_CONFLICT' });
    expect((error as Error).message).toContain('storage');
    expect((error as Error).message).toContain('max_age');
    const info = await jsm.streams.info(`${prefix}_bank`);
    expect(info.config.storage).toBe('memory');
    expect(info.config.max_age).toBe(60_000_000_000);
    await store.close();
  });

  it('refuses replicas above 1 on a server older than 2.9.21, saying why', async () => {
    await expectReplicasRefused(nc, uniqueName('js'));
  });

  it('rejects invalid options with the path of each problem', async () => {
    const error = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'has.dot',
      ackTimeoutMs: -1,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'INVALID_OPTIONS' });
    expect((error as Error).message).toContain('prefix');
    expect((error as Error).message).toContain('ackTimeoutMs');
  });

  it('turns a stale expected position into a conflict and stores nothing', async () => {
    const store = await JetStreamEventStore.open({ connection: nc, prefix: uniqueName('js') });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'a1' };
    const first = await store.append(request(stream, 0, 1));
    const error = await store.append(request(stream, 0, 2)).catch((e: unknown) => e);
    expect(isConflictError(error)).toBe(true);
    expect(error).toMatchObject({
      code: 'CONCURRENCY_CONFLICT',
      details: { expectedPosition: 0, actualPosition: first.position },
    });
    expect((await readAll(store, stream)).map((c) => c.position)).toEqual([first.position]);
    await store.close();
  });

  it('stores a duplicate message id once and returns the first position', async () => {
    const store = await JetStreamEventStore.open({ connection: nc, prefix: uniqueName('js') });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'dup' };
    const first = await store.append(request(stream, 0, 1));
    // Same id again, even with a stale expected position: deduplication comes first.
    const again = await store.append(request(stream, 0, 1));
    expect(again).toEqual({ position: first.position, duplicate: true });
    expect(await readAll(store, stream)).toHaveLength(1);
    await store.close();
  });

  it('reads long aggregates through a consumer it deletes afterwards', async () => {
    const prefix = uniqueName('js');
    const store = await JetStreamEventStore.open({ connection: nc, prefix, directReadLimit: 4 });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'long' };
    const other = { domain: 'bank', aggregate: 'Account', id: 'other' };
    let position = 0;
    let otherPosition = 0;
    for (let version = 1; version <= 60; version++) {
      position = (await store.append(request(stream, position, version))).position;
      if (version % 10 === 0) {
        otherPosition = (await store.append(request(other, otherPosition, version / 10))).position;
      }
    }
    const commits = await readAll(store, stream);
    expect(commits.map((c) => c.events[0]?.meta.version)).toEqual(
      Array.from({ length: 60 }, (_, i) => i + 1),
    );
    expect(commits.every((c) => c.stream.id === 'long')).toBe(true);
    const after = await readAll(store, stream, commits[49]!.position);
    expect(after.map((c) => c.events[0]?.meta.version)).toEqual([
      51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
    ]);
    const consumers = await jsm.consumers.list(`${prefix}_bank`).next();
    expect(consumers).toHaveLength(0);
    await store.close();
  });

  it('round-trips events, metadata and command records', async () => {
    const store = await JetStreamEventStore.open({ connection: nc, prefix: uniqueName('js') });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'meta' };
    const events: StoredEvent[] = [
      {
        ...event(stream, 1, 'cmd-1'),
        meta: {
          ...event(stream, 1, 'cmd-1').meta,
          actor: 'ann',
          correlationId: 'corr',
          causationId: 'cause',
        },
      },
      {
        ...event(stream, 2, 'cmd-2'),
        meta: { ...event(stream, 2, 'cmd-2').meta, schemaVersion: 2 },
      },
    ];
    const { position } = await store.append({
      stream,
      expectedPosition: 0,
      dedupId: 'cmd-1..cmd-2#2',
      events,
      commands: [{ id: 'cmd-1', response: { ok: true } }, { id: 'cmd-2' }],
    });
    expect(await readAll(store, stream)).toEqual([
      {
        stream,
        position,
        events,
        commands: [{ id: 'cmd-1', response: { ok: true } }, { id: 'cmd-2' }],
      },
    ]);
    await store.close();
  });

  it('names the subject and sequence of a message that is not a commit', async () => {
    const prefix = uniqueName('js');
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'bad' };
    const good = await store.append(request(stream, 0, 1));
    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    const ack = await js.publish(
      `${prefix}.evt.bank.Account.bad`,
      new TextEncoder().encode('{"hello":1}'),
    );
    const commits: Commit[] = [];
    const error = await (async () => {
      for await (const commit of store.read(stream)) commits.push(commit);
    })().catch((e: unknown) => e);
    // Reads walk back from the newest commit, so the damaged one stops the read before any commit.
    expect(commits).toEqual([]);
    expect(good.position).toBeLessThan(ack.seq);
    expect(isInfrastructureError(error)).toBe(true);
    expect(error).toMatchObject({
      code: 'CORRUPT_DATA',
      details: { subject: `${prefix}.evt.bank.Account.bad`, sequence: ack.seq },
    });
    await store.close();
  });

  it('rejects a commit larger than the server accepts, storing nothing', async () => {
    const store = await JetStreamEventStore.open({ connection: nc, prefix: uniqueName('js') });
    const stream = { domain: 'bank', aggregate: 'Account', id: 'big' };
    const big = request(stream, 0, 1);
    big.events[0]!.data = { blob: 'x'.repeat((nc.info?.max_payload ?? 1_048_576) + 1) };
    const error = await store.append(big).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'COMMIT_TOO_LARGE', kind: 'rejection' });
    expect(await readAll(store, stream)).toHaveLength(0);
    expect((await store.append(request(stream, 0, 1))).duplicate).toBe(false);
    await store.close();
  });

  it('keeps many appends in flight on one acknowledgement subscription', async () => {
    const store = await JetStreamEventStore.open({ connection: nc, prefix: uniqueName('js') });
    await store.ensureDomains(['bank']);
    const streams = Array.from({ length: 500 }, (_, i) => ({
      domain: 'bank',
      aggregate: 'Account',
      id: `p${i}`,
    }));
    const appending = streams.map((stream) => store.append(request(stream, 0, 1)));
    expect(store.inFlight).toBe(500);
    const results = await Promise.all(appending);
    expect(new Set(results.map((r) => r.position)).size).toBe(500);
    expect(store.inFlight).toBe(0);
    await store.close();
  });

  it('fails calls after close with STORE_CLOSED', async () => {
    const store = await JetStreamEventStore.open({ connection: nc, prefix: uniqueName('js') });
    await store.close();
    const stream = { domain: 'bank', aggregate: 'Account', id: 'x' };
    await expect(store.append(request(stream, 0, 1))).rejects.toMatchObject({
      code: 'STORE_CLOSED',
    });
    await expect(readAll(store, stream)).rejects.toMatchObject({ code: 'STORE_CLOSED' });
  });
});

async function eventually<T>(attempt: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!isInfrastructureError(error) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe('JetStream event store on an isolated server', () => {
  it('resends an append whose acknowledgement is late, storing it once', async () => {
    const server = await startNatsServer();
    try {
      const nc = await connect({ servers: server.url });
      const store = await JetStreamEventStore.open({
        connection: nc,
        prefix: 'late',
        ackTimeoutMs: 300,
        appendAttempts: 10,
      });
      const stream = { domain: 'bank', aggregate: 'Account', id: 'late' };
      await store.ensureDomains(['bank']);
      await server.pause();
      const appending = store.append(request(stream, 0, 1));
      await new Promise((resolve) => setTimeout(resolve, 800));
      await server.resume();
      const result = await appending;
      expect(result.duplicate).toBe(false);
      const commits = await readAll(store, stream);
      expect(commits.map((c) => c.position)).toEqual([result.position]);
      await store.close();
      await nc.close();
    } finally {
      await server.cleanup();
    }
  });

  it('keeps acknowledged commits across a kill -9 and restart of nats-server', async () => {
    const server = await startNatsServer();
    try {
      const nc = await connect({
        servers: server.url,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      });
      const store = await JetStreamEventStore.open({ connection: nc, prefix: 'durable' });
      const stream = { domain: 'bank', aggregate: 'Account', id: 'd1' };
      let position = 0;
      for (let version = 1; version <= 20; version++) {
        position = (await store.append(request(stream, position, version))).position;
      }
      await server.kill();
      await server.restart();
      // Reads fail with a retryable error until the client has reconnected, then succeed.
      const commits = await eventually(() => readAll(store, stream));
      expect(commits.map((c) => c.events[0]?.meta.version)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      expect((await store.append(request(stream, position, 21))).duplicate).toBe(false);
      await store.close();
      await nc.close();
    } finally {
      await server.cleanup();
    }
  });

  it('fails appends in flight with a retryable error when the connection closes', async () => {
    const server = await startNatsServer();
    try {
      const nc = await connect({ servers: server.url });
      const store = await JetStreamEventStore.open({ connection: nc, prefix: 'closing' });
      await store.ensureDomains(['bank']);
      await server.pause();
      const stream = { domain: 'bank', aggregate: 'Account', id: 'c' };
      const appending = store.append(request(stream, 0, 1)).catch((e: unknown) => e);
      await nc.close();
      const error = await appending;
      expect(isInfrastructureError(error)).toBe(true);
      expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE', retryable: true });
      await server.resume();
    } finally {
      await server.cleanup();
    }
  });
});

eventStoreContract('JetStream', async () => {
  const connection = await connectShared();
  const store = await JetStreamEventStore.open({ connection, prefix: uniqueName('contract') });
  return {
    store,
    domain: 'contract',
    cleanup: async () => {
      await store.close();
      await connection.close();
    },
  };
});
