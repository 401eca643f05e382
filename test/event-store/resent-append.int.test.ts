import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JetStreamEventStore, type AppendRequest, type StreamRef } from '../../runtime/index.js';
import { startNatsServer, type LocalNatsServer } from '../helpers/nats.js';
import { depositCommit, silentLogger } from '../fixtures/test-support.js';

const stream: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };

/** A one-event commit of `commandId`, decided by `writer` (its timestamp tells them apart). */
function commit(
  commandId: string,
  expectedPosition: number,
  version: number,
  writer: number,
): AppendRequest {
  return depositCommit(stream, commandId, expectedPosition, version, 1_767_225_600_000 + writer);
}

describe('an append sent again after a late acknowledgement', () => {
  let server: LocalNatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await server?.cleanup();
  });

  /** Appends while the server is paused longer than the acknowledgement timeout: sent twice. */
  async function appendThroughPause(store: JetStreamEventStore, request: AppendRequest) {
    await store.ensureDomains(['bank']);
    await server.pause();
    const appended = store.append(request);
    await new Promise((resolve) => setTimeout(resolve, 350));
    await server.resume();
    return appended;
  }

  it('is its own first send when the server stored that one: not a duplicate', async () => {
    const store = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'own',
      ackTimeoutMs: 200,
      logger: silentLogger,
    });
    const result = await appendThroughPause(store, commit('dep-1', 0, 1, 1));
    expect(result.duplicate).toBe(false);
    const stored = [];
    for await (const c of store.read(stream)) stored.push(c);
    expect(stored.map((c) => c.position)).toEqual([result.position]);
    await store.close();
  });

  it("is a duplicate when another writer stored the same command id first, so the writer catches up instead of taking the other's position", async () => {
    const other = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'other',
      logger: silentLogger,
    });
    const first = await other.append(commit('dep-1', 0, 1, 1));
    // Another node, whose actor never saw that commit, decided the same command again.
    const store = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'other',
      ackTimeoutMs: 200,
      logger: silentLogger,
    });
    const again = await appendThroughPause(store, commit('dep-1', 0, 1, 2));
    expect(again).toEqual({ position: first.position, duplicate: true });
    await Promise.all([store.close(), other.close()]);
  });

  it('fails with STORE_TIMEOUT, naming its tries, when no acknowledgement comes to any of them; the store serves again after', async () => {
    const store = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'late',
      ackTimeoutMs: 100,
      appendAttempts: 2,
      logger: silentLogger,
    });
    await store.ensureDomains(['bank']);
    await server.pause();
    const appended = store.append(commit('dep-1', 0, 1, 1)).then(
      () => expect.unreachable('the append cannot be acknowledged while the server is paused'),
      (error: unknown) => error,
    );
    // Two tries of 100 ms, and the sweep that finds the second one late.
    await new Promise((resolve) => setTimeout(resolve, 600));
    await server.resume();
    const error = await appended;
    expect(error).toMatchObject({ code: 'STORE_TIMEOUT', details: { attempts: 2 } });
    expect((error as Error).message).toContain('after 2 tries of 100 ms');
    expect((error as Error).message).toContain('Send the command again with the same command id');
    // Stored at most once: the message id was the same on both tries.
    const again = await store.append(commit('dep-1', 0, 1, 1));
    const stored = [];
    for await (const c of store.read(stream)) stored.push(c);
    expect(stored).toHaveLength(1);
    expect(again.position).toBe(stored[0]?.position);
    await store.close();
  });
});
