import { writeFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  findNatsServer,
  isConfigError,
  isInfrastructureError,
  type LocalNatsCluster,
  type LocalNatsServer,
} from '../../runtime/index.js';
import {
  connectShared,
  sharedNatsUrl,
  startNatsCluster,
  startNatsServer,
  uniqueName,
} from '../helpers/nats.js';

describe('the shared nats-server', () => {
  it('accepts connections and answers JetStream account info', async () => {
    const nc = await connectShared();
    try {
      const jsm = await jetstreamManager(nc);
      const account = await jsm.getAccountInfo();
      expect(account.api.errors).toBeGreaterThanOrEqual(0);
      const name = uniqueName('shared');
      await jsm.streams.add({ name, subjects: [`${name}.>`] });
      expect((await jetstream(nc).publish(`${name}.a`, 'hello')).seq).toBe(1);
      await jsm.streams.delete(name);
    } finally {
      await nc.close();
    }
  });

  it('runs with the settings of the project nats.conf', async () => {
    const nc = await connectShared();
    try {
      expect(nc.info).toMatchObject({
        server_name: 'jetactor-test',
        max_payload: 1024 * 1024,
        jetstream: true,
      });
      expect(sharedNatsUrl()).not.toMatch(/:4222$/);
    } finally {
      await nc.close();
    }
  });
});

describe('an isolated nats-server', () => {
  let server: LocalNatsServer;

  beforeAll(async () => {
    server = await startNatsServer();
  });

  afterAll(async () => {
    await server?.cleanup();
  });

  it('reports where it listens, where it stores and what it runs', async () => {
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.port).not.toBe(4222);
    expect(server.monitorPort).not.toBe(8222);
    expect(server.pid).toBeGreaterThan(0);
    expect(server.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(server.running).toBe(true);
    expect((await stat(join(server.storeDir, 'jetstream'))).isDirectory()).toBe(true);
    const health = await fetch(`${server.monitorUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(server.log()).toContain('Server is ready');
  });

  it('keeps file-store data across kill -9 and a restart on the same port', async () => {
    const name = uniqueName('durable');
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: StorageType.File });
    await jetstream(nc).publish(`${name}.a`, 'kept');
    await nc.close();
    const { port, pid } = server;

    await server.kill();
    expect(server.running).toBe(false);
    expect(server.pid).toBeUndefined();
    await server.restart();

    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(pid);
    const again = await connect({ servers: server.url });
    try {
      const message = await (await jetstreamManager(again)).streams.getMessage(name, { seq: 1 });
      expect(message?.string()).toBe('kept');
    } finally {
      await again.close();
    }
  });

  it('answers nothing while paused and answers again after resume', async () => {
    const nc = await connect({ servers: server.url });
    try {
      await server.pause();
      expect(server.paused).toBe(true);
      await expect(nc.request('$JS.API.INFO', undefined, { timeout: 300 })).rejects.toThrow();
      await server.resume();
      expect(server.paused).toBe(false);
      const reply = await nc.request('$JS.API.INFO', undefined, { timeout: 2_000 });
      expect(reply.json()).toMatchObject({
        type: 'io.nats.jetstream.api.v1.account_info_response',
      });
    } finally {
      await nc.close();
    }
  });

  it('stops gracefully, refuses pause() while stopped and starts again', async () => {
    await server.stop();
    expect(server.running).toBe(false);
    await expect(server.pause()).rejects.toMatchObject({ code: 'NATS_SERVER_STOPPED' });
    await server.restart();
    const nc = await connect({ servers: server.url });
    await nc.close();
  });

  it('removes its directory on cleanup and cannot be restarted after it', async () => {
    const other = await startNatsServer();
    const pid = other.pid ?? 0;
    await other.cleanup();
    expect(other.running).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
    await expect(stat(other.dir)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(other.restart()).rejects.toMatchObject({ code: 'NATS_SERVER_STOPPED' });
  });
});

describe('a local nats cluster', () => {
  let cluster: LocalNatsCluster;
  let startedInMs = 0;

  beforeAll(async () => {
    const started = Date.now();
    cluster = await startNatsCluster({ size: 3, readyTimeoutMs: 15_000 });
    startedInMs = Date.now() - started;
  });

  afterAll(async () => {
    await cluster?.cleanup();
  });

  it('starts three routed servers with a JetStream meta leader', async () => {
    expect(startedInMs).toBeLessThan(20_000);
    expect(cluster.servers).toHaveLength(3);
    const names = cluster.servers.map((server) => server.serverName);
    expect(new Set(names).size).toBe(3);
    expect(new Set(cluster.servers.map((server) => server.port)).size).toBe(3);
    expect(new Set(cluster.servers.map((server) => server.storeDir)).size).toBe(3);
    expect(names).toContain(await cluster.waitForMetaLeader());
  });

  it('creates a stream with replicas 1 and stores into it', async () => {
    const nc = await connect({ servers: cluster.urls });
    try {
      const jsm = await jetstreamManager(nc);
      const name = uniqueName('clustered');
      const info = await jsm.streams.add({ name, subjects: [`${name}.>`], num_replicas: 1 });
      expect(info.cluster?.name).toBe(cluster.name);
      expect((await jetstream(nc).publish(`${name}.a`, 'hi')).seq).toBe(1);
    } finally {
      await nc.close();
    }
  });

  it('keeps a meta leader while one member is killed, and takes the member back', async () => {
    const leader = await cluster.waitForMetaLeader();
    const follower = cluster.servers.find((server) => server.serverName !== leader);
    if (follower === undefined) throw new Error('a three-server cluster has a follower');
    await follower.kill();
    expect(await cluster.waitForMetaLeader(10_000)).toBe(leader);
    await follower.restart();
    expect(await cluster.waitForMetaLeader(10_000)).toBe(leader);
  });
});

describe('finding and starting nats-server', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('rejects a missing binary with NATS_SERVER_NOT_FOUND, saying how to install it', async () => {
    const error: unknown = await startNatsServer({ binary: '/nonexistent/nats-server' }).catch(
      (e: unknown) => e,
    );
    expect(isConfigError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'NATS_SERVER_NOT_FOUND' });
    expect((error as Error).message).toContain('apt-get install nats-server');
    expect((error as Error).message).toContain('https://github.com/nats-io/nats-server/releases');
    expect(() => findNatsServer('no-such-nats-server')).toThrow(/not found.*on PATH/);
  });

  it('takes the binary from NATS_SERVER_BIN', () => {
    vi.stubEnv('NATS_SERVER_BIN', join(tmpdir(), 'no-such-dir', 'nats-server'));
    expect(() => findNatsServer()).toThrow(/NATS_SERVER_BIN.*apt-get install nats-server/s);
    vi.stubEnv('NATS_SERVER_BIN', '');
    expect(findNatsServer()).toMatch(/nats-server$/);
  });

  it('reports a server that exits at start with its log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jetactor-bad-conf-'));
    try {
      const config = join(dir, 'bad.conf');
      await writeFile(config, 'jetstream {\n');
      const error: unknown = await startNatsServer({ config }).catch((e: unknown) => e);
      expect(isInfrastructureError(error)).toBe(true);
      expect(error).toMatchObject({ code: 'NATS_SERVER_FAILED' });
      expect((error as Error).message).toContain('Parse error');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad options, naming each', async () => {
    await expect(startNatsServer({ port: -3 })).rejects.toMatchObject({
      code: 'INVALID_OPTIONS',
      message: expect.stringContaining('port'),
    });
  });
});
