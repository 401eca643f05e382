import { readFileSync } from 'node:fs';
import { beforeAll, describe, it } from 'vitest';
import { assertBuilt, jsonLines, runCli } from '../fixtures/run-cli.js';

describe.concurrent('jetactor dev', () => {
  beforeAll(() => assertBuilt());

  it('answers commands from stdin with JSON replies on stdout and exits 0 on quit', async ({
    expect,
  }) => {
    const run = await runCli(
      ['dev', '--memory', 'bank'],
      [
        'Account acc-1 open {"owner":"ann"}',
        'Account acc-1 deposit {"amount":5}',
        'state Account acc-1',
        'events Account acc-1',
        'stats',
        'quit',
      ],
    );

    expect(run.code).toBe(0);
    const [opened, deposited, state, events, stats, ...rest] = jsonLines(run);
    expect(rest).toEqual([]);
    expect(opened).toMatchObject({ version: 1, duplicate: false, events: [{ type: 'Opened' }] });
    expect(deposited).toMatchObject({ version: 2, response: { balance: 5 } });
    expect(state).toMatchObject({
      lifecycle: 'ready',
      value: 'open',
      version: 2,
      context: { owner: 'ann', balance: 5 },
    });
    expect((events as { type: string }[]).map((e) => e.type)).toEqual(['Opened', 'Deposited']);
    expect(stats).toMatchObject({ active: 1, spawned: 1, deadLetters: 0 });
    expect(run.stderr).toContain('local node on the in-memory store');
    expect(run.stderr).toContain('hosting bank (Account, Transfer)');
    expect(run.stderr).toContain('jetactor dev: stopped.');
  });

  it('writes errors with their code to stderr and keeps serving', async ({ expect }) => {
    const run = await runCli(
      ['dev', '--memory', 'bank'],
      [
        'Account acc-1 open {"owner":"ann"}',
        'Account acc-1 withdraw {"amount":5}',
        'Account acc-1 deposit {"amount":"five"}',
        'Account acc-1 deposit {amount: 5}',
        'Vault v-1 open {}',
        'Account acc-1 transfer {}',
        'state Account acc.1',
        'Account acc-1 deposit {"amount":7}',
      ],
      { endInput: true },
    );

    expect(run.code).toBe(0);
    const errors = run.stderr.split('\n').filter((line) => line.startsWith('error '));
    expect(errors.map((line) => line.split(':')[0])).toEqual([
      'error INSUFFICIENT_FUNDS',
      'error VALIDATION_FAILED',
      'error INVALID_COMMAND',
      'error UNKNOWN_AGGREGATE',
      'error UNKNOWN_COMMAND',
      'error INVALID_ID',
    ]);
    expect(errors[0]).toContain('Cannot withdraw 5');
    const replies = jsonLines(run);
    expect(replies).toHaveLength(2);
    expect(replies[1]).toMatchObject({ version: 2, response: { balance: 7 } });
  });

  it('hosts the bundled flight domain by default and takes domain-qualified names', async ({
    expect,
  }) => {
    const run = await runCli(
      ['dev', '--memory'],
      [
        'flight.Aircraft F-GKXA takeOff',
        'Aircraft F-GKXA land {"airport":"CDG"}',
        'Aircraft F-GKXA land {"airport":"CDG"}',
        'state flight.Aircraft F-GKXA',
      ],
      { endInput: true },
    );

    expect(run.code).toBe(0);
    expect(jsonLines(run)).toMatchObject([
      { version: 1, events: [{ type: 'TakenOff' }] },
      { version: 2, response: { airport: 'CDG' } },
      { value: 'onGround', version: 2, context: { airport: 'CDG', flights: 1 } },
    ]);
    expect(run.stderr).toMatch(/error INVALID_TRANSITION: .*"onGround".*"Landed"/);
  });

  it('exits 1 with a clear message when a domain module cannot be found', async ({ expect }) => {
    const run = await runCli(['dev', '--memory', 'no-such-domain.js'], [], { endInput: true });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('INVALID_OPTIONS');
    expect(run.stderr).toContain('"no-such-domain.js" not found');
  });
});

describe.concurrent('jetactor', () => {
  beforeAll(() => assertBuilt());

  it('exits 2 with the usage on stderr for an unknown command', async ({ expect }) => {
    const run = await runCli(['deploy'], [], { endInput: true });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown command "deploy"');
    expect(run.stderr).toContain('Usage: jetactor <command>');
    expect(run.stdout).toBe('');
  });

  it('exits 2 without a command, for an unknown option and for a bad log level', async ({
    expect,
  }) => {
    const runs = await Promise.all([
      runCli([], [], { endInput: true }),
      runCli(['dev', '--memory', '--verbose'], [], { endInput: true }),
      runCli(['dev', '--memory', '--log-level', 'loud'], [], { endInput: true }),
    ]);
    expect(runs.map((r) => r.code)).toEqual([2, 2, 2]);
    expect(runs[0]?.stderr).toContain('Usage: jetactor');
    expect(runs[1]?.stderr).toContain('--verbose');
    expect(runs[2]?.stderr).toContain('--log-level "loud" is not one of');
  });

  it('prints its version and its help on stdout', async ({ expect }) => {
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as {
      version: string;
    };
    const [version, help] = await Promise.all([
      runCli(['version'], [], { endInput: true }),
      runCli(['--help'], [], { endInput: true }),
    ]);
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('dev [domain modules…]');
  });
});
