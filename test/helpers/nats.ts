import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  connect,
  type ConnectionOptions,
  type Msg,
  type NatsConnection,
} from '@nats-io/transport-node';
import { inject } from 'vitest';
import {
  LocalNatsCluster,
  type LocalNatsClusterOptions,
} from '../../runtime/nats/local-nats-cluster.js';
import {
  LocalNatsServer,
  type LocalNatsServerOptions,
} from '../../runtime/nats/local-nats-server.js';

export { LocalNatsCluster, LocalNatsServer };
export type { LocalNatsClusterOptions, LocalNatsServerOptions };

/** The project's `nats.conf`, which every server started by the tests starts from. */
export const projectNatsConfig = fileURLToPath(new URL('../../nats.conf', import.meta.url));

/** URL of the nats-server shared by the whole test run (started by global-setup.ts). */
export function sharedNatsUrl(): string {
  return inject('natsUrl');
}

/**
 * Connects to the shared server. Give each spec its own names with {@link uniqueName}, and close
 * the connection in `afterAll`.
 */
export function connectShared(options: ConnectionOptions = {}): Promise<NatsConnection> {
  return connect({ name: 'jetactor test', ...options, servers: sharedNatsUrl() });
}

/**
 * A name no other spec uses, for prefixes, streams, buckets and consumers on the shared server:
 * `<prefix>_<10 hex digits>`, valid as a stream name and as a subject token.
 */
export function uniqueName(prefix = 't'): string {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,40}$/.test(prefix)) {
    throw new Error(
      `uniqueName(${JSON.stringify(prefix)}): the prefix must be a letter then letters, digits, "_" or "-" (at most 41).`,
    );
  }
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/**
 * Starts an isolated server (own port, own temp store) from the project's nats.conf, for specs
 * that kill, pause or restart it. Call `cleanup()` in a `finally` or `afterAll`.
 */
export function startNatsServer(options: LocalNatsServerOptions = {}): Promise<LocalNatsServer> {
  return LocalNatsServer.start({ config: projectNatsConfig, ...options });
}

/**
 * Starts an isolated JetStream cluster (3 servers by default) from the project's nats.conf.
 * Call `cleanup()` in a `finally` or `afterAll`.
 */
export function startNatsCluster(options: LocalNatsClusterOptions = {}): Promise<LocalNatsCluster> {
  return LocalNatsCluster.start({ config: projectNatsConfig, ...options });
}

/**
 * Subscribes to `<subject>.>` and answers every request with `re: <its data>`; `received` holds
 * the messages in order, and `done` resolves once `count` came. Flush before publishing.
 */
export function echoMessages(
  nc: NatsConnection,
  subject: string,
  count: number,
): { received: Msg[]; done: Promise<void> } {
  const received: Msg[] = [];
  const done = new Promise<void>((resolve) => {
    nc.subscribe(`${subject}.>`, {
      callback: (error, msg) => {
        if (error !== null) return;
        received.push(msg);
        if (msg.reply) msg.respond(`re: ${new TextDecoder().decode(msg.data)}`);
        if (received.length === count) resolve();
      },
    });
  });
  return { received, done };
}
