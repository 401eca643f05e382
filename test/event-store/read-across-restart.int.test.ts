import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JetactorError,
  JetStreamEventStore,
  type Commit,
  type StreamRef,
} from '../../runtime/index.js';
import { startNatsServer, type LocalNatsServer } from '../helpers/nats.js';
import { depositCommit, silentLogger } from '../fixtures/test-support.js';

const stream: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };
/** More commits than the read consumer buffers (1024), so the read must pull again. */
const COMMITS = 1_500;
const ACK_TIMEOUT_MS = 1_000;

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
      position = (await store.append(depositCommit(stream, `c-${version}`, position, version)))
        .position;
    }
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await nc?.close();
    await server?.cleanup();
  });

  /** Reads the whole history, killing the server after 50 commits and restarting it after `downMs`. */
  async function readAcrossRestart(reader: JetStreamEventStore, downMs: number) {
    const started = Date.now();
    let read = 0;
    let failure: unknown;
    let restarted: Promise<void> | undefined;
    try {
      for await (const _commit of reader.read(stream, 0)) {
        read++;
        if (read === 50) {
          await server.kill();
          restarted = new Promise((resolve) => setTimeout(resolve, downMs)).then(() =>
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
    return { elapsed, read, failure };
  }

  /** Reads until a whole history comes back (the server may still be recovering its streams). */
  async function readWhole(): Promise<number[]> {
    const again: Commit[] = [];
    for (let tries = 0; tries < 20 && again.length < COMMITS; tries++) {
      again.length = 0;
      try {
        for await (const commit of store.read(stream, 0)) again.push(commit);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    return again.map((commit) => commit.events[0]!.meta.version);
  }

  const versions = Array.from({ length: COMMITS }, (_, index) => index + 1);

  it('fails with STORE_UNAVAILABLE once no commit came for three ackTimeoutMs, instead of waiting on a silent consumer; the next read is whole', async () => {
    // Down for longer than the 3 s this store waits for a commit. Before the bound, this read
    // sat for 30 s after the consumer's first batch of 1024.
    const { elapsed, read, failure } = await readAcrossRestart(store, 8_000);
    expect(elapsed).toBeLessThan(8_000);
    expect(read).toBeLessThan(COMMITS);
    expect(failure).toBeInstanceOf(JetactorError);
    expect((failure as JetactorError).code).toBe('STORE_UNAVAILABLE');
    expect((failure as JetactorError).retryable).toBe(true);
    expect((failure as JetactorError).message).toMatch(
      /sent no commit of reads\.evt\.bank\.Account\.acc-1 for 3000 ms while reading after sequence \d+ \(up to \d+\)/,
    );
    expect(await readWhole()).toEqual(versions);
  }, 60_000);

  it('goes on where it was when the server is back and the consumer recovers within the bound', async () => {
    const patient = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'reads',
      directReadLimit: 4,
      ackTimeoutMs: 5_000,
      logger: silentLogger,
    });
    try {
      const { read, failure } = await readAcrossRestart(patient, 2_000);
      expect(failure).toBeUndefined();
      expect(read).toBe(COMMITS);
    } finally {
      await patient.close();
    }
    expect(await readWhole()).toEqual(versions);
  }, 60_000);
});
