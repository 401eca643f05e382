import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ConfigError, InfrastructureError, describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { LocalNatsServer, removeDirOnExit } from './local-nats-server.js';

/** Options of {@link LocalNatsCluster.start}; every field is optional. */
export interface LocalNatsClusterOptions {
  /** Number of servers, 1 to 9. Default 3 (the smallest cluster that survives losing one). */
  size?: number;
  /** Cluster name, shared by the members (named `<name>-1`, `<name>-2`, …). Default random. */
  name?: string;
  /** The nats-server binary; as for {@link LocalNatsServer.start}. */
  binary?: string;
  /** A config file each member starts from (copied, as for {@link LocalNatsServer.start}). */
  config?: string;
  /** Address every listener binds to. Default `127.0.0.1`. */
  host?: string;
  /** How long each member may take to accept connections. Default 10 000. */
  startTimeoutMs?: number;
  /** How long start() waits for a JetStream meta leader once the members run. Default 20 000. */
  readyTimeoutMs?: number;
  /** How long a member's stop() waits after SIGTERM before SIGKILL. Default 5 000. */
  stopTimeoutMs?: number;
  /** Receives the members' log lines, as for {@link LocalNatsServer.start}. */
  logger?: Logger;
}

const optionsSchema = z.strictObject({
  size: z.number().int().min(1).max(9).default(3),
  name: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, 'must be letters, digits, "_" or "-"')
    .optional(),
  binary: z.string().min(1).optional(),
  config: z.string().min(1).optional(),
  host: z.string().min(1).default('127.0.0.1'),
  startTimeoutMs: z.number().int().positive().default(10_000),
  readyTimeoutMs: z.number().int().positive().default(20_000),
  stopTimeoutMs: z.number().int().positive().default(5_000),
  logger: z.custom<Logger>((value) => typeof value === 'object' && value !== null).optional(),
});

type ResolvedClusterOptions = Readonly<z.infer<typeof optionsSchema>>;

/**
 * A JetStream cluster of {@link LocalNatsServer}s on one machine: each member has its own client,
 * monitoring and route ports, store and name; all share a cluster name and route to each other.
 * Members can be stopped, killed, paused and restarted one by one through
 * {@link LocalNatsCluster.servers}.
 *
 * @example
 * const cluster = await LocalNatsCluster.start({ size: 3 });
 * const nc = await connect({ servers: cluster.urls });
 * await cluster.servers[0]!.kill();
 * await cluster.waitForMetaLeader();
 * await cluster.cleanup();
 */
export class LocalNatsCluster {
  /** The cluster name. */
  readonly name: string;
  /** The members, in start order. */
  readonly servers: readonly LocalNatsServer[];
  /** Directory holding one sub-directory per member; removed by cleanup(). */
  readonly dir: string;
  readonly #readyTimeoutMs: number;
  readonly #keepDir: () => void;

  private constructor(
    name: string,
    servers: readonly LocalNatsServer[],
    dir: string,
    readyTimeoutMs: number,
    keepDir: () => void,
  ) {
    this.name = name;
    this.servers = servers;
    this.dir = dir;
    this.#readyTimeoutMs = readyTimeoutMs;
    this.#keepDir = keepDir;
  }

  /**
   * Starts the members and resolves once JetStream has a meta leader that every running member
   * knows, and `$JS.API.INFO` answers.
   *
   * @throws as {@link LocalNatsServer.start}; `NATS_SERVER_FAILED` also when no meta leader is
   *   elected within `readyTimeoutMs`. Nothing is left running after a failure.
   */
  static async start(options: LocalNatsClusterOptions = {}): Promise<LocalNatsCluster> {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new ConfigError(
        `Invalid local nats cluster options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    const config = Object.freeze(parsed.data);
    const name = config.name ?? `jetactor-${randomBytes(3).toString('hex')}`;
    // The route ports are found free, then released for the servers to bind; meanwhile another
    // listener (even a member's own monitoring port, chosen by the system) may take one. Start
    // again on other ports when that happens.
    let attempt = await startMembers(config, name);
    for (let tries = 1; tries < 3 && attempt.portTaken; tries++) {
      await new LocalNatsCluster(
        name,
        attempt.servers,
        attempt.dir,
        config.readyTimeoutMs,
        attempt.keepDir,
      ).cleanup();
      attempt = await startMembers(config, name);
    }
    const { started, servers, dir, keepDir } = attempt;
    const cluster = new LocalNatsCluster(name, servers, dir, config.readyTimeoutMs, keepDir);
    const failed = started.find((result) => result.status === 'rejected');
    if (failed !== undefined) {
      await cluster.cleanup();
      throw failed.reason;
    }
    try {
      await cluster.waitForMetaLeader();
    } catch (error) {
      await cluster.cleanup();
      throw error;
    }
    return cluster;
  }

  /** Client URLs of all members, for `connect({ servers })`. */
  get urls(): string[] {
    return this.servers.map((server) => server.url);
  }

  /**
   * Waits until every running, unpaused member names the same JetStream meta leader and
   * `$JS.API.INFO` answers through them; returns the leader's server name. Use it after killing
   * or restarting members.
   *
   * @throws InfrastructureError `NATS_SERVER_FAILED` after `timeoutMs`, with the members' logs.
   */
  async waitForMetaLeader(timeoutMs: number = this.#readyTimeoutMs): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let nc: NatsConnection | undefined;
    let last = 'no member answered yet';
    try {
      while (Date.now() < deadline) {
        const members = this.servers.filter((server) => server.running && !server.paused);
        const leaders = await Promise.all(members.map(metaLeader));
        const leader = leaders[0];
        if (members.length === 0) {
          last = 'no member is running';
        } else if (leader === undefined || leaders.some((other) => other !== leader)) {
          last = `members name these meta leaders: ${leaders.map((l) => l ?? '(none)').join(', ')}`;
        } else if (!members.some((server) => server.serverName === leader)) {
          last = `members still name ${leader} as meta leader, which is not running or is paused`;
        } else {
          try {
            nc ??= await connect({
              servers: members.map((server) => server.url),
              timeout: 1_000,
              name: `jetactor cluster probe ${this.name}`,
            });
            const jsm = await jetstreamManager(nc, { timeout: 1_000, checkAPI: false });
            await jsm.getAccountInfo();
            return leader;
          } catch (error) {
            last = `meta leader ${leader}, but $JS.API.INFO failed: ${describeError(error)}`;
          }
        }
        await sleep(100);
      }
    } finally {
      await nc?.close().catch(() => undefined);
    }
    const logs = this.servers
      .map(
        (server) => `--- ${server.serverName}:\n${server.log().split('\n').slice(-10).join('\n')}`,
      )
      .join('\n');
    throw new InfrastructureError(
      'NATS_SERVER_FAILED',
      `JetStream cluster "${this.name}" has no meta leader after ${timeoutMs} ms (${last}); a leader needs a majority of members running and routed to each other. Last log lines:\n${logs}`,
      { details: { cluster: this.name, last } },
    );
  }

  /** Stops every member gracefully; stores are kept. */
  async stop(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.stop()));
  }

  /** Kills every member with SIGKILL; stores are kept. */
  async kill(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.kill()));
  }

  /** Kills every member and removes {@link LocalNatsCluster.dir}. Safe to call more than once. */
  async cleanup(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.cleanup()));
    await rm(this.dir, { recursive: true, force: true, maxRetries: 3 });
    this.#keepDir();
  }
}

/** Starts a {@link LocalNatsCluster}; the same as `LocalNatsCluster.start(options)`. */
export function startNatsCluster(options: LocalNatsClusterOptions = {}): Promise<LocalNatsCluster> {
  return LocalNatsCluster.start(options);
}

async function metaLeader(server: LocalNatsServer): Promise<string | undefined> {
  try {
    const response = await fetch(`${server.monitorUrl}/jsz`, {
      signal: AbortSignal.timeout(1_000),
    });
    if (!response.ok) return undefined;
    const jsz = (await response.json()) as { meta_cluster?: { leader?: string } };
    const leader = jsz.meta_cluster?.leader;
    return leader === undefined || leader === '' ? undefined : leader;
  } catch {
    return undefined;
  }
}

/** Starts the members of a cluster on fresh route ports, each in its own directory under one. */
async function startMembers(config: ResolvedClusterOptions, name: string) {
  const routePorts = await freePorts(config.size, config.host);
  const dir = await mkdtemp(join(tmpdir(), 'jetactor-nats-cluster-'));
  const keepDir = removeDirOnExit(dir);
  const routes = routePorts.map((port) => `nats-route://${config.host}:${port}`);
  const started = await Promise.allSettled(
    routePorts.map((port, i) =>
      LocalNatsServer.start({
        ...(config.binary === undefined ? {} : { binary: config.binary }),
        ...(config.config === undefined ? {} : { config: config.config }),
        ...(config.logger === undefined ? {} : { logger: config.logger }),
        host: config.host,
        dir: join(dir, `n${i + 1}`),
        serverName: `${name}-${i + 1}`,
        cluster: { name, port, routes: routes.filter((_, j) => j !== i) },
        startTimeoutMs: config.startTimeoutMs,
        stopTimeoutMs: config.stopTimeoutMs,
      }),
    ),
  );
  return {
    started,
    dir,
    keepDir,
    servers: started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])),
    portTaken: started.some(
      (result) =>
        result.status === 'rejected' && /address already in use/.test(describeError(result.reason)),
    ),
  };
}

/** Distinct free ports, found by binding port 0 (all held open together, then released). */
async function freePorts(count: number, host: string): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolveListen, reject) => {
        server.once('error', reject);
        server.listen(0, host, () => resolveListen());
      });
      const address = server.address();
      if (address !== null && typeof address !== 'string') ports.push(address.port);
    }
    return ports;
  } catch (error) {
    throw new InfrastructureError(
      'NATS_SERVER_FAILED',
      `Cannot find free ports on ${host} for the cluster routes (${describeError(error)}); check the host option.`,
      { cause: error },
    );
  } finally {
    await Promise.all(
      servers.map(
        (server) => new Promise<void>((resolveClose) => server.close(() => resolveClose())),
      ),
    );
  }
}
