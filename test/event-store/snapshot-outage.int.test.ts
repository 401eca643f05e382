import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  KvSnapshotStore,
  type Snapshot,
  type StreamRef,
} from '../../runtime/index.js';
import { startNatsServer, type LocalNatsServer } from '../helpers/nats.js';

const stream: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };
const snapshot: Snapshot = {
  fingerprint: 'f-1',
  version: 3,
  position: 7,
  state: { value: 'open', context: { balance: 30 } },
  commands: [['c-3', 7]],
};
const TIMEOUT_MS = 400;
const RETRY_AFTER_MS = 600;

describe('snapshot reads while the snapshot bucket does not answer', () => {
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

  it('fails within its timeout, then skips the bucket for a while instead of waiting again', async () => {
    const store = new KvSnapshotStore({
      connection: nc,
      prefix: 'snapout',
      timeoutMs: TIMEOUT_MS,
      retryAfterMs: RETRY_AFTER_MS,
    });
    await store.save(stream, snapshot);
    expect(await store.load(stream)).toEqual(snapshot);

    await server.pause();
    try {
      const failed = store.load(stream);
      await expect(failed).rejects.toThrow(
        /snapshot bucket snapout_snapshots_bank did not answer for Account\.acc-1.*skip snapshots for 600 ms/,
      );
      // The server is still stopped: an answer now can only come from the skip window, since a
      // request would wait its whole timeout.
      const skipped = Date.now();
      expect(await store.load({ ...stream, id: 'acc-2' })).toBeUndefined();
      expect(Date.now() - skipped).toBeLessThan(TIMEOUT_MS / 2);
    } finally {
      await server.resume();
    }

    await new Promise((resolve) => setTimeout(resolve, RETRY_AFTER_MS + 50));
    expect(await store.load(stream)).toEqual(snapshot);
  });

  it('refuses a timeout or skip window that is not a positive whole number, naming it', () => {
    expect(() => new KvSnapshotStore({ connection: nc, timeoutMs: 0 })).toThrow(ConfigError);
    expect(() => new KvSnapshotStore({ connection: nc, timeoutMs: 0 })).toThrow(
      /timeoutMs 0 is not valid: give a whole number of milliseconds/,
    );
    expect(() => new KvSnapshotStore({ connection: nc, retryAfterMs: 1.5 })).toThrow(
      /retryAfterMs 1\.5 is not valid/,
    );
  });
});
