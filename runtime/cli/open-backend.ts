import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ConfigError, InfrastructureError, describeError, isConfigError } from '../errors.js';
import type { EventStore } from '../event-store/event-store.js';
import { InMemoryEventStore } from '../event-store/in-memory-event-store.js';
import { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import { KvSnapshotStore } from '../event-store/kv-snapshot-store.js';
import type { SnapshotStore } from '../event-store/snapshot-store.js';
import type { Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
import { LocalNatsServer, bundledNatsConfig, findNatsServer } from '../nats/local-nats-server.js';
import { DEFAULT_PREFIX } from '../nats/subjects.js';
import { redactUrlCredentials, urlCredentials } from './connection-config.js';

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
  /** The URL other processes use to reach that NATS server, with any password in it masked. */
  url?: string;
  /** The subject, stream and bucket prefix. */
  prefix: string;
  /** One line saying where events live, for the user. */
  description: string;
  /** Closes the store, the connection and the embedded server, if any. */
  close(): Promise<void>;
  /**
   * For a start that failed: closes, and removes what opening created (the embedded server's
   * store directory, when it did not exist before), so nothing is left half-made.
   */
  abandon(): Promise<void>;
}

/**
 * Opens the store a CLI node runs on: the given NATS server; or, by default, an embedded
 * nats-server started from the bundled nats.conf with its store in `.jetactor/nats` (so data
 * survives restarts), when the binary is on the machine; else the in-memory store, and says why.
 * When `dataDir` was given the embedded server is required: without it the call fails with
 * `NATS_SERVER_NOT_FOUND` (creating nothing), rather than quietly keeping nothing.
 */
export async function openBackend(options: BackendOptions, logger: Logger): Promise<Backend> {
  if (options.memory === true) return memoryBackend('the in-memory store (--memory)');
  if (options.prefix !== undefined && !isIdentifier(options.prefix)) {
    throw new ConfigError(
      `--prefix ${JSON.stringify(options.prefix)} is not valid: use letters, digits, "_" or "-", starting with a letter (it starts stream, subject and bucket names).`,
    );
  }
  if (options.natsUrl !== undefined) {
    const nc = await connectTo(options.natsUrl);
    const shown = redactUrlCredentials(options.natsUrl);
    return natsBackend(nc, options, shown, `NATS at ${shown}`, () => Promise.resolve());
  }
  try {
    findNatsServer();
  } catch (error) {
    if (!isConfigError(error)) throw error;
    if (options.dataDir !== undefined) {
      throw new ConfigError(
        `--data ${JSON.stringify(options.dataDir)} keeps the events of an embedded nats-server, but ${error.message} Or drop --data to run on the in-memory store (nothing is kept).`,
        { code: 'NATS_SERVER_NOT_FOUND', cause: error, details: error.details },
      );
    }
    logger.warn({ err: error }, 'nats-server not found; running on the in-memory store');
    // The first sentence of the error says what was looked for (PATH, or NATS_SERVER_BIN).
    const why = /^.*?\.(?=\s|$)/.exec(error.message)?.[0] ?? 'nats-server not found.';
    return memoryBackend(
      `the in-memory store, nothing is kept (${why.slice(0, -1)}; install nats-server for a durable local store)`,
    );
  }
  const dataDir = resolve(options.dataDir ?? '.jetactor/nats');
  // Created by this start: removed again when the start fails, so nothing is left half-made.
  const created = firstMissing(dataDir);
  let server: LocalNatsServer;
  try {
    server = await LocalNatsServer.start({
      ...(bundledNatsConfig() === undefined ? {} : { config: bundledNatsConfig() }),
      storeDir: dataDir,
      serverName: 'jetactor-dev',
      logger,
    });
  } catch (error) {
    if (created !== undefined) await rm(created, { recursive: true, force: true });
    throw error;
  }
  try {
    const nc = await connectTo(server.url);
    const backend = await natsBackend(
      nc,
      options,
      server.url,
      `an embedded nats-server ${server.version} at ${server.url} (store ${dataDir})`,
      async () => {
        await server.stop();
        await server.cleanup();
      },
    );
    return {
      ...backend,
      abandon: async () => {
        await backend.close();
        if (created !== undefined) await rm(created, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await server.cleanup();
    if (created !== undefined) await rm(created, { recursive: true, force: true });
    throw error;
  }
}

/** The outermost directory of `path` that does not exist yet, if any. */
function firstMissing(path: string): string | undefined {
  let missing: string | undefined;
  for (let dir = path; !existsSync(dir); dir = dirname(dir)) {
    missing = dir;
    if (dirname(dir) === dir) break;
  }
  return missing;
}

function memoryBackend(description: string): Backend {
  const store = new InMemoryEventStore();
  const close = () => store.close();
  return { store, prefix: DEFAULT_PREFIX, description, close, abandon: close };
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
    const close = async () => {
      await store.close();
      await nc.drain();
      await after();
    };
    return {
      store,
      snapshots,
      connection: nc,
      url,
      prefix: options.prefix ?? DEFAULT_PREFIX,
      description,
      close,
      abandon: close,
    };
  } catch (error) {
    await nc.close();
    throw error;
  }
}

/**
 * Connects to `url`, taking user info in it as the credentials (as `connectNats` does); errors
 * show the URL with the password masked.
 */
async function connectTo(url: string): Promise<NatsConnection> {
  const { servers, credentials } = urlCredentials([url]);
  const shown = redactUrlCredentials(url);
  try {
    return await connect({ servers, name: 'jetactor', maxReconnectAttempts: -1, ...credentials });
  } catch (error) {
    const why = redactUrlCredentials(describeError(error));
    if (/invalid url|unsupported protocol/i.test(why)) {
      throw new ConfigError(
        `--nats ${JSON.stringify(shown)} is not a NATS URL; use e.g. nats://127.0.0.1:4222.`,
        { cause: error },
      );
    }
    throw new InfrastructureError(
      'CONNECTION_FAILED',
      `Cannot connect to NATS at ${shown}: ${why}. Start nats-server (nats-server -c nats.conf), or drop --nats to use an embedded one.`,
      { cause: error },
    );
  }
}
