import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JetStreamEventStore, type StreamRef } from '../../runtime/index.js';
import { startNatsServer, type LocalNatsServer } from '../helpers/nats.js';
import { depositCommit, silentLogger } from '../fixtures/test-support.js';

const stream: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'long-1' };
const other: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'long-2' };
/** More commits than a read asks for at once (1024), interleaved with another aggregate's. */
const COMMITS = 2_500;

describe('a long read through its own pull consumer', () => {
  let server: LocalNatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: JetStreamEventStore;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    jsm = await jetstreamManager(nc);
    store = await JetStreamEventStore.open({
      connection: nc,
      prefix: 'long',
      directReadLimit: 4,
      ackTimeoutMs: 2_000,
      logger: silentLogger,
    });
    const positions = new Map<string, number>([
      [stream.id, 0],
      [other.id, 0],
    ]);
    for (let version = 1; version <= COMMITS; version++) {
      for (const ref of version % 3 === 0 ? [stream, other] : [stream]) {
        const at = positions.get(ref.id)!;
        const ack = await store.append(depositCommit(ref, `c-${version}`, at, version));
        positions.set(ref.id, ack.position);
      }
    }
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await nc?.close();
    await server?.cleanup();
  });

  async function consumers(): Promise<string[]> {
    const names: string[] = [];
    for await (const info of jsm.consumers.list('long_bank')) names.push(info.name);
    return names;
  }

  it('reads every commit of the aggregate once and in order, and deletes its consumer', async () => {
    const versions: number[] = [];
    const positions: number[] = [];
    for await (const commit of store.read(stream, 0)) {
      versions.push(commit.events[0]!.meta.version);
      positions.push(commit.position);
    }
    expect(versions).toEqual(Array.from({ length: COMMITS }, (_, index) => index + 1));
    expect(positions.every((p, i) => i === 0 || p > positions[i - 1]!)).toBe(true);
    expect(await consumers()).toEqual([]);
  });

  it('goes on from where it was when its consumer is deleted under it', async () => {
    const versions: number[] = [];
    for await (const commit of store.read(stream, 0)) {
      versions.push(commit.events[0]!.meta.version);
      if (versions.length === 300) {
        const [name] = await consumers();
        expect(name).toMatch(/^jetactor_read_/);
        await jsm.consumers.delete('long_bank', name!);
      }
    }
    expect(versions).toEqual(Array.from({ length: COMMITS }, (_, index) => index + 1));
    expect(await consumers()).toEqual([]);
  }, 20_000);

  it('waits for a reader that pauses longer than a pull lasts, and misses nothing', async () => {
    const versions: number[] = [];
    for await (const commit of store.read(stream, 0)) {
      versions.push(commit.events[0]!.meta.version);
      // Longer than the 2 s a pull waits on the server.
      if (versions.length === 600) await new Promise((resolve) => setTimeout(resolve, 2_500));
    }
    expect(versions).toEqual(Array.from({ length: COMMITS }, (_, index) => index + 1));
  }, 20_000);

  it('reads from a position in the middle of the run', async () => {
    const all: number[] = [];
    for await (const commit of store.read(stream, 0)) all.push(commit.position);
    const after = all[1_999]!;
    const versions: number[] = [];
    for await (const commit of store.read(stream, after))
      versions.push(commit.events[0]!.meta.version);
    expect(versions).toEqual(Array.from({ length: COMMITS - 2_000 }, (_, index) => index + 2_001));
  });
});
