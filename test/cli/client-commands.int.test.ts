import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { cliPath, jsonLines, runCli, type CliRun } from '../fixtures/run-cli.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A CLI process the test talks to while it runs. */
function startCli(args: readonly string[]) {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.on('error', () => undefined);
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const waitFor = async (what: () => boolean, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!what()) {
      if (Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`not seen in time.\nstdout:\n${stdout}\nstderr:\n${stderr}`);
      }
      await sleep(20);
    }
  };
  return { child, exited, waitFor, stdout: () => stdout, stderr: () => stderr };
}

describe('jetactor send, state and events', () => {
  let node: NodeProcess;
  const prefix = uniqueName('cli');
  const conn = () => ['--nats', sharedNatsUrl(), '--prefix', prefix];
  const cli = (...args: string[]): Promise<CliRun> =>
    runCli([...args, ...conn()], [], { endInput: true });

  beforeAll(async () => {
    node = await startNodeProcess({
      natsUrl: sharedNatsUrl(),
      prefix,
      domains: ['bank', 'flight'],
    });
  });

  afterAll(async () => {
    await node.stop();
    await killAllNodes();
  });

  it('print their usage with --help', async () => {
    const runs = await Promise.all(
      ['node', 'send', 'state', 'events'].map((command) =>
        runCli([command, '--help'], [], { endInput: true }),
      ),
    );
    for (const [index, command] of ['node', 'send', 'state', 'events'].entries()) {
      expect(runs[index]).toMatchObject({ code: 0, stderr: '' });
      expect(runs[index]!.stdout).toContain(`Usage: jetactor ${command}`);
      expect(runs[index]!.stdout).toContain('--nats <urls>');
    }
    const main = await runCli(['--help'], [], { endInput: true });
    for (const command of [
      'node <domain modules…>',
      'send <domain>',
      'state <domain>',
      'events <domain>',
    ]) {
      expect(main.stdout).toContain(command);
    }
  });

  it('send prints the reply; an error reply exits 1 with its code and message on stderr', async () => {
    const opened = await cli('send', 'bank.Account.s-1', 'open', '{"owner":"ann"}');
    expect(opened.code).toBe(0);
    expect(jsonLines(opened)).toMatchObject([{ version: 1, duplicate: false }]);
    const first = await cli(
      'send',
      'bank.Account.s-1',
      'deposit',
      '{"amount":5}',
      '--command-id',
      'd-1',
      '--actor',
      'ann',
    );
    const again = await cli(
      'send',
      'bank.Account.s-1',
      'deposit',
      '{"amount":5}',
      '--command-id',
      'd-1',
    );
    expect(jsonLines(first)).toMatchObject([
      { commandId: 'd-1', version: 2, duplicate: false, events: [{ meta: { actor: 'ann' } }] },
    ]);
    expect(jsonLines(again)).toMatchObject([{ commandId: 'd-1', version: 2, duplicate: true }]);
    const [poor, stale] = await Promise.all([
      cli('send', 'bank.Account.s-1', 'withdraw', '{"amount":500}'),
      cli('send', 'bank.Account.s-1', 'deposit', '{"amount":1}', '--expected-version', '9'),
    ]);
    expect(poor.code).toBe(1);
    expect(poor.stdout).toBe('');
    expect(poor.stderr).toMatch(/^error INSUFFICIENT_FUNDS: Cannot withdraw 500/);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/^error WRONG_EXPECTED_VERSION: .*version 2/);
  });

  it('send refuses a bad target, bad JSON or a bad version with exit 2, and reports a missing domain', async () => {
    const runs = await Promise.all([
      cli('send', 'bank.Account', 'open'),
      cli('send', 'bank.Account.s-2', 'open', '{owner: ann}'),
      cli('send', 'bank.Account.s-2', 'open', '{}', '--expected-version', 'latest'),
      cli('send', 'bank.Account.s-2'),
      runCli(['send', 'bank.Account.s-2', 'open', '--nats', 'http://nowhere'], [], {
        endInput: true,
      }),
    ]);
    expect(runs.map((r) => r.code)).toEqual([2, 2, 2, 2, 2]);
    expect(runs[0].stderr).toContain('"bank.Account" is not <domain>.<Aggregate>.<id>');
    expect(runs[1].stderr).toContain('is not JSON');
    expect(runs[2].stderr).toContain('--expected-version "latest"');
    expect(runs[3].stderr).toContain('name the command');
    expect(runs[4].stderr).toContain('is not a NATS URL');
    const nobody = await cli('send', 'shop.Cart.c-1', 'add', '{}', '--retries', '0');
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toMatch(/^error NO_RESPONDERS: No node listens on .*"shop"/);
  });

  it('state prints the state and, with --history, the stored events', async () => {
    await cli('send', 'flight.Aircraft.F-1', 'takeOff');
    await cli('send', 'flight.Aircraft.F-1', 'land', '{"airport":"CDG"}');
    const [state, history, unknown] = await Promise.all([
      cli('state', 'flight.Aircraft.F-1'),
      cli('state', 'flight.Aircraft.F-1', '--history'),
      cli('state', 'flight.Glider.G-1'),
    ]);
    expect(state.code).toBe(0);
    expect(jsonLines(state)).toMatchObject([
      { value: 'onGround', version: 2, context: { airport: 'CDG', flights: 1 } },
    ]);
    expect(jsonLines(history)).toMatchObject([
      { version: 2 },
      { type: 'TakenOff', meta: { version: 1 } },
      { type: 'Landed', data: { airport: 'CDG' }, meta: { version: 2 } },
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^error UNKNOWN_AGGREGATE/);
  });

  it('events prints the stored events as JSON lines, filtered by aggregate and id', async () => {
    await cli('send', 'bank.Account.e-1', 'open', '{"owner":"ann"}');
    await cli('send', 'bank.Account.e-2', 'open', '{"owner":"bob"}');
    await cli('send', 'bank.Account.e-2', 'deposit', '{"amount":3}');
    const [all, one, none, missing] = await Promise.all([
      cli('events', 'bank'),
      cli('events', 'bank', '--aggregate', 'Account', '--id', 'e-2'),
      cli('events', 'bank', '--aggregate', 'Account', '--id', 'nobody'),
      cli('events', 'shop'),
    ]);
    expect(all.code).toBe(0);
    const ids = (jsonLines(all) as { meta: { aggregateId: string } }[]).map(
      (e) => e.meta.aggregateId,
    );
    expect(ids).toContain('e-1');
    expect(ids).toContain('e-2');
    expect(jsonLines(one)).toMatchObject([
      { type: 'Opened', data: { owner: 'bob' } },
      { type: 'Deposited', data: { amount: 3 }, meta: { version: 2 } },
    ]);
    expect(none).toMatchObject({ code: 0, stdout: '' });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`There is no stream ${prefix}_shop`);
  });

  it('events --follow prints new events until Ctrl-C', async () => {
    await cli('send', 'bank.Account.f-1', 'open', '{"owner":"ann"}');
    const follow = startCli([
      'events',
      'bank',
      '--aggregate',
      'Account',
      '--id',
      'f-1',
      '--follow',
      ...conn(),
    ]);
    await follow.waitFor(() => follow.stdout().includes('"Opened"'));
    await cli('send', 'bank.Account.f-1', 'deposit', '{"amount":4}');
    await follow.waitFor(() => follow.stdout().includes('"Deposited"'));
    follow.child.kill('SIGINT');
    expect(await follow.exited).toBe(0);
  });

  it('events ends quietly with exit 0 when its reader goes away (| head)', async () => {
    await cli('send', 'bank.Account.p-1', 'open', '{"owner":"ann"}');
    const follow = startCli([
      'events',
      'bank',
      '--aggregate',
      'Account',
      '--id',
      'p-1',
      '--follow',
      ...conn(),
    ]);
    await follow.waitFor(() => follow.stdout().includes('"Opened"'));
    follow.child.stdout.destroy();
    await cli('send', 'bank.Account.p-1', 'deposit', '{"amount":1}');
    await cli('send', 'bank.Account.p-1', 'deposit', '{"amount":2}');
    expect(await follow.exited).toBe(0);
    expect(follow.stderr()).toBe('');
  });
});

describe('jetactor dev over NATS', () => {
  let data: string;

  beforeAll(async () => {
    data = await mkdtemp(join(tmpdir(), 'jetactor-dev-test-'));
  });

  afterAll(async () => {
    await rm(data, { recursive: true, force: true });
  });

  it('serves commands from other processes on its embedded server and prints the URL to use', async () => {
    const dev = startCli(['dev', 'flight', '--data', data]);
    await dev.waitFor(() => /Commands over NATS at (nats:\/\/\S+)/.test(dev.stderr()));
    const url = /Commands over NATS at (nats:\/\/[^\s(]+)/.exec(dev.stderr())![1]!;
    expect(dev.stderr()).toContain(
      `jetactor send flight.Aircraft.demo-1 takeOff '{}' --nats ${url}`,
    );
    expect(dev.stderr()).toContain(
      `nats req jetactor.cmd.flight.Aircraft.demo-1.takeOff '{}' --server ${url}`,
    );
    const sent = await runCli(['send', 'flight.Aircraft.dev-1', 'takeOff', '--nats', url], [], {
      endInput: true,
    });
    expect(sent.code).toBe(0);
    expect(jsonLines(sent)).toMatchObject([{ version: 1 }]);
    dev.child.stdin.write('state Aircraft dev-1\nquit\n');
    expect(await dev.exited).toBe(0);
    expect(dev.stdout()).toContain('"value":"flying"');
  });
});
