import { resolve } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ConfigError, InfrastructureError, describeError, isConfigError } from '../errors.js';
import type { EventStore } from '../event-store/event-store.js';
import { InMemoryEventStore } from '../event-store/in-memory-event-store.js';
import { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import { KvSnapshotStore } from '../event-store/kv-snapshot-store.js';
import type { SnapshotStore } from '../event-store/snapshot-store.js';
import type { Logger } from '../logger.js';
import { LocalNatsServer, bundledNatsConfig, findNatsServer } from '../nats/local-nats-server.js';
import { DEFAULT_PREFIX } from '../nats/subjects.js';

/** Where a CLI node keeps its events. */
export interface BackendOptions {
  /** Connect to this NATS server (URL, e.g. `nats://127.0.0.1:4222`) instead of starting one. */
  natsUrl?: string | undefined;
  /** Use the in-memory store: nothing survives the process. */
  memory?: boolean | undefined;
  /** Store directory of the embedded nats-server. Default `.jetactor/nats`. */
  dataDir?: string | undefined;
  /** Subject and stream prefix. */
  prefix?: string | undefined;
}

/** An opened backend. */
export interface Backend {
  store: EventStore;
  snapshots?: SnapshotStore;
  /** The NATS connection, when the store is on NATS (the command router serves on it). */
  connection?: NatsConnection;
  /** The URL other processes use to reach that NATS server. */
  url?: string;
  /** The subject, stream and bucket prefix. */
  prefix: string;
  /** One line saying where events live, for the user. */
  description: string;
  /** Closes the store, the connection and the embedded server, if any. */
  close(): Promise<void>;
}

/**
 * Opens the store a CLI node runs on: the given NATS server; or, by default, an embedded
 * nats-server started from the bundled nats.conf with its store in `.jetactor/nats` (so data
 * survives restarts), when the binary is on the machine; else the in-memory store.
 */
export async function openBackend(options: BackendOptions, logger: Logger): Promise<Backend> {
  if (options.memory === true) return memoryBackend('the in-memory store (--memory)');
  if (options.natsUrl !== undefined) {
    const nc = await connectTo(options.natsUrl);
    return natsBackend(nc, options, options.natsUrl, `NATS at ${options.natsUrl}`, () =>
      Promise.resolve(),
    );
  }
  try {
    findNatsServer();
  } catch (error) {
    if (!isConfigError(error)) throw error;
    logger.warn({ err: error }, 'nats-server not found; running on the in-memory store');
    return memoryBackend(
      'the in-memory store (nats-server is not installed; install it for a durable local store)',
    );
  }
  const dataDir = resolve(options.dataDir ?? '.jetactor/nats');
  const server = await LocalNatsServer.start({
    ...(bundledNatsConfig() === undefined ? {} : { config: bundledNatsConfig() }),
    storeDir: dataDir,
    serverName: 'jetactor-dev',
    logger,
  });
  try {
    const nc = await connectTo(server.url);
    return await natsBackend(
      nc,
      options,
      server.url,
      `an embedded nats-server ${server.version} at ${server.url} (store ${dataDir})`,
      async () => {
        await server.stop();
        await server.cleanup();
      },
    );
  } catch (error) {
    await server.cleanup();
    throw error;
  }
}

function memoryBackend(description: string): Backend {
  const store = new InMemoryEventStore();
  return { store, prefix: DEFAULT_PREFIX, description, close: () => store.close() };
}

async function natsBackend(
  nc: NatsConnection,
  options: BackendOptions,
  url: string,
  description: string,
  after: () => Promise<void>,
): Promise<Backend> {
  const prefix = options.prefix === undefined ? {} : { prefix: options.prefix };
  try {
    const store = await JetStreamEventStore.open({ connection: nc, ...prefix });
    const snapshots = new KvSnapshotStore({ connection: nc, ...prefix });
    return {
      store,
      snapshots,
      connection: nc,
      url,
      prefix: options.prefix ?? DEFAULT_PREFIX,
      description,
      close: async () => {
        await store.close();
        await nc.drain();
        await after();
      },
    };
  } catch (error) {
    await nc.close();
    throw error;
  }
}

async function connectTo(url: string): Promise<NatsConnection> {
  try {
    return await connect({ servers: url, name: 'jetactor', maxReconnectAttempts: -1 });
  } catch (error) {
    if (/invalid url|unsupported protocol/i.test(describeError(error))) {
      throw new ConfigError(
        `--nats ${JSON.stringify(url)} is not a NATS URL; use e.g. nats://127.0.0.1:4222.`,
        { cause: error },
      );
    }
    throw new InfrastructureError(
      'STORE_UNAVAILABLE',
      `Cannot connect to NATS at ${url}: ${describeError(error)}. Start nats-server (nats-server -c nats.conf), or drop --nats to use an embedded one.`,
      { cause: error },
    );
  }
}
