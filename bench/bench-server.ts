import {
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { LocalNatsServer, bundledNatsConfig } from '../runtime/index.js';
import type { WatchedProcess } from './process-cpu.js';

/** A fresh nats-server for one contender of one scenario, and a connection to it. */
export interface BenchServer {
  /** The server: own port, own temp store (file storage), from the project's nats.conf. */
  server: LocalNatsServer;
  /** A connection to it. */
  nc: NatsConnection;
  /** Opens another connection (load generators, nodes), closed by {@link BenchServer.close}. */
  connect(name: string): Promise<NatsConnection>;
  /** Closes every connection, kills the server and removes its store. */
  close(): Promise<void>;
}

/** This process and the bench server's nats-server, for CPU accounting. */
export function benchProcesses(bench: BenchServer): WatchedProcess[] {
  const pid = bench.server.pid;
  return [{ role: 'bench' }, ...(pid === undefined ? [] : [{ role: 'nats-server', pid }])];
}

/** Starts a fresh nats-server with an empty store and connects to it. */
export async function startBenchServer(name: string): Promise<BenchServer> {
  const server = await LocalNatsServer.start({ config: bundledNatsConfig() });
  const connections: NatsConnection[] = [];
  const open = async (connectionName: string): Promise<NatsConnection> => {
    const nc = await connect({
      servers: server.url,
      name: connectionName,
      maxReconnectAttempts: 0,
    });
    connections.push(nc);
    return nc;
  };
  try {
    const nc = await open(`bench ${name}`);
    return {
      server,
      nc,
      connect: open,
      close: async () => {
        await Promise.all(connections.map((c) => c.close().catch(() => undefined)));
        await server.cleanup();
      },
    };
  } catch (error) {
    await server.cleanup();
    throw error;
  }
}

/**
 * Creates a stream with the settings jetactor gives its domain streams (file storage, limits
 * retention, discard new, 2-minute duplicate window, direct get, no deletes), so the raw
 * contenders write to the same kind of stream.
 */
export async function createRawStream(
  nc: NatsConnection,
  name: string,
  subjects: string,
): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name,
    subjects: [subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    max_msgs: -1,
    max_bytes: -1,
    max_age: 0,
    num_replicas: 1,
    duplicate_window: 120_000 * 1_000_000,
    allow_direct: true,
    deny_delete: true,
  });
  return jsm;
}
