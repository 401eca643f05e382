import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { spawnNode } from '../fixtures/node-process.js';
import { runCli } from '../fixtures/run-cli.js';

/** Command lines of the processes still running that mention `text` (Linux /proc). */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(text)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // The process ended meanwhile.
    }
  }
  return found;
}

/** A PATH that finds node but no nats-server (the fallback directories are hidden separately). */
const pathWithoutNats = dirname(process.execPath);

describe('jetactor dev with bad configuration', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jetactor-bad-config-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('falls back to the in-memory store when nats-server is missing, and says why', async () => {
    const cwd = await mkdtemp(join(dir, 'fallback-'));
    const missing = join(dir, 'no-such-dir', 'nats-server');
    const run = await runCli(
      ['dev', 'bank', '--log-level', 'error'],
      ['Account a-1 open {"owner":"ann"}', 'quit'],
      { cwd, env: { PATH: pathWithoutNats, NATS_SERVER_BIN: missing } },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('local node on the in-memory store, nothing is kept');
    expect(run.stderr).toContain(`NATS_SERVER_BIN is ${JSON.stringify(missing)}`);
    expect(run.stdout).toContain('"version":1');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('fails with NATS_SERVER_NOT_FOUND when --data asks for the embedded server, creating nothing', async () => {
    const cwd = await mkdtemp(join(dir, 'data-'));
    const run = await runCli(['dev', 'bank', '--data', 'store/events'], ['quit'], {
      cwd,
      env: { PATH: pathWithoutNats, NATS_SERVER_BIN: join(dir, 'missing', 'nats-server') },
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /NATS_SERVER_NOT_FOUND: --data "store\/events" keeps the events of an embedded nats-server, but nats-server not found: NATS_SERVER_BIN is ".*", which is not an executable file\. Install it/,
    );
    expect(run.stderr).toContain('drop --data to run on the in-memory store');
    expect(run.stdout).toBe('');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('exits 1 with CONNECTION_FAILED for an unreachable --nats, and 1 naming --prefix for a bad prefix, starting nothing', async () => {
    const cwd = await mkdtemp(join(dir, 'unreachable-'));
    const [unreachable, prefix] = await Promise.all([
      runCli(['dev', 'bank', '--nats', 'nats://127.0.0.1:1'], ['quit'], { cwd }),
      runCli(['dev', 'bank', '--prefix', 'a.b', '--data', 'events'], ['quit'], { cwd }),
    ]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(
      /jetactor: CONNECTION_FAILED: Cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/,
    );
    expect(prefix.code).toBe(1);
    expect(prefix.stderr).toContain('INVALID_OPTIONS: --prefix "a.b" is not valid');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('stops its embedded nats-server and removes the store it created when a later step fails', async () => {
    const cwd = await mkdtemp(join(dir, 'inspector-'));
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const data = join(cwd, 'store', 'events');
      const run = await runCli(
        ['dev', 'bank', '--data', data, '--inspect', `127.0.0.1:${port}`],
        ['quit'],
        { cwd },
      );
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(
        `INSPECTOR_UNAVAILABLE: The inspector cannot listen on 127.0.0.1:${port}`,
      );
      expect(existsSync(join(cwd, 'store'))).toBe(false);
      expect(processesMentioning(data)).toEqual([]);
    } finally {
      busy.close();
    }
  });
});

describe('the NATS commands with bad configuration', () => {
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectShared();
  });

  afterAll(async () => {
    await nc.close();
  });

  it('exit 1 with CONNECTION_FAILED when NATS cannot be reached', async () => {
    const commands = [
      ['send', 'bank.Account.a-1', 'open', '{"owner":"ann"}'],
      ['state', 'bank.Account.a-1'],
      ['events', 'bank'],
      ['query', 'bank.balance', '{"account":"a-1"}'],
      ['deadletters', 'list'],
      ['projection', 'status'],
    ];
    const runs = await Promise.all(
      commands.map((args) =>
        runCli([...args, '--nats', 'nats://127.0.0.1:1'], [], { endInput: true }),
      ),
    );
    for (const [index, run] of runs.entries()) {
      const name = commands[index]![0]!;
      expect(run.code, `${name}: ${run.stderr}`).toBe(1);
      expect(run.stderr).toContain(
        `jetactor ${name}: CONNECTION_FAILED: Cannot connect to NATS at nats://127.0.0.1:1`,
      );
      expect(run.stdout).toBe('');
    }
  });

  it('a node refused for its configuration creates no stream, bucket or consumer', async () => {
    const prefix = uniqueName('bc');
    const cases = [
      ['bank', '--max-in-flight', 'abc'],
      ['bank', '--max-payload=-1'],
      ['bank', '--lease-time', 'soon'],
      ['bank', '--partitions=-3'],
      ['bank', '--forward-timeout', '1.5'],
      ['bank', '--bogus'],
    ];
    const runs = await Promise.all(
      cases.map(async (args) => {
        const node = spawnNode([...args, '--nats', sharedNatsUrl(), '--prefix', prefix]);
        return { exit: await node.exited, stderr: node.stderr() };
      }),
    );
    for (const [index, run] of runs.entries()) {
      expect(run.exit.code, run.stderr).toBe(2);
      const flag = cases[index]![1]!.split('=')[0]!;
      expect(run.stderr).toContain(flag);
    }
    const jsm = await jetstreamManager(nc);
    const streams: string[] = [];
    for await (const name of jsm.streams.names()) streams.push(name);
    expect(streams.filter((name) => name.startsWith(prefix))).toEqual([]);
    expect(streams.filter((name) => name.startsWith(`KV_${prefix}`))).toEqual([]);
  });
});
