import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JetactorError,
  JetStreamEventStore,
  type AppendRequest,
  type Commit,
  type StreamRef,
} from '../../runtime/index.js';
import { startNatsServer, type LocalNatsServer } from '../helpers/nats.js';
import { silentLogger } from '../fixtures/test-support.js';

const stream: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };
/** More commits than the read consumer buffers (1024), so the read must pull again. */
const COMMITS = 1_500;
const ACK_TIMEOUT_MS = 1_000;
const DOWN_MS = 3_000;

function deposit(version: number, expectedPosition: number): AppendRequest {
  const commandId = `c-${version}`;
  return {
    stream,
    expectedPosition,
    dedupId: `Account.acc-1.${commandId}`,
    events: [
      {
        type: 'Deposited',
        data: { amount: 1 },
        meta: {
          domain: 'bank',
          aggregate: 'Account',
          aggregateId: 'acc-1',
          version,
          timestamp: 1_767_225_600_000,
          commandId,
          correlationId: commandId,
          causationId: commandId,
        },
      },
    ],
    commands: [{ id: commandId }],
  };
}

describe('a long read while nats-server is killed and restarted', () => {
  let server: LocalNatsServer;
  let nc: NatsConnection;
  let store: JetStreamEventStore;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    store = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'reads',
      directReadLimit: 4,
      ackTimeoutMs: ACK_TIMEOUT_MS,
      logger: silentLogger,
    });
    let position = 0;
    for (let version = 1; version <= COMMITS; version++) {
      position = (await store.append(deposit(version, position))).position;
    }
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await nc?.close();
    await server?.cleanup();
  });

  it('ends within its timeout instead of waiting on a silent consumer, and the next read is whole', async () => {
    const started = Date.now();
    let read = 0;
    let failure: unknown;
    let restarted: Promise<void> | undefined;
    try {
      for await (const _commit of store.read(stream, 0)) {
        read++;
        if (read === 50) {
          await server.kill();
          restarted = new Promise((resolve) => setTimeout(resolve, DOWN_MS)).then(() =>
            server.restart(),
          );
        }
        // A slow reader, so the first batch is still being read when the server goes away.
        if (read > 40) await new Promise((resolve) => setTimeout(resolve, 1));
      }
    } catch (error) {
      failure = error;
    }
    const elapsed = Date.now() - started;
    await restarted;

    // Before the bound, this read sat for 30 s after the consumer's first batch.
    expect(elapsed).toBeLessThan(DOWN_MS + 6 * ACK_TIMEOUT_MS);
    if (failure !== undefined) {
      expect(failure).toBeInstanceOf(JetactorError);
      expect((failure as JetactorError).code).toBe('STORE_UNAVAILABLE');
      expect((failure as JetactorError).retryable).toBe(true);
      expect((failure as JetactorError).message).toContain('reads.evt.bank.Account.acc-1');
    } else {
      expect(read).toBe(COMMITS);
    }

    const again: Commit[] = [];
    for (let tries = 0; tries < 20 && again.length < COMMITS; tries++) {
      again.length = 0;
      try {
        for await (const commit of store.read(stream, 0)) again.push(commit);
      } catch {
        // The server may still be recovering its streams; read again shortly.
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    expect(again.map((commit) => commit.events[0]!.meta.version)).toEqual(
      Array.from({ length: COMMITS }, (_, index) => index + 1),
    );
  }, 60_000);
});
