import { describe, expect, it } from 'vitest';
import { DEFAULT_INSPECTOR_PORT } from '../../runtime/index.js';
import { UsageError } from '../../runtime/cli/cli-io.js';
import { inspectOptions, withInspectDefault } from '../../runtime/cli/inspect-option.js';

describe('--inspect', () => {
  it('takes an optional port or host:port', () => {
    expect(withInspectDefault(['bank', '--inspect'])).toEqual([
      'bank',
      `--inspect=${DEFAULT_INSPECTOR_PORT}`,
    ]);
    expect(withInspectDefault(['--inspect', 'bank'])).toEqual([
      `--inspect=${DEFAULT_INSPECTOR_PORT}`,
      'bank',
    ]);
    expect(withInspectDefault(['--inspect', '0', 'bank'])).toEqual(['--inspect=0', 'bank']);
    expect(withInspectDefault(['--inspect', '127.0.0.1:9000'])).toEqual([
      '--inspect=127.0.0.1:9000',
    ]);
    expect(withInspectDefault(['--inspect', '--nats', 'x'])).toEqual([
      `--inspect=${DEFAULT_INSPECTOR_PORT}`,
      '--nats',
      'x',
    ]);
    expect(withInspectDefault(['--', '--inspect'])).toEqual(['--', '--inspect']);
  });

  it('listens on loopback unless told otherwise', () => {
    expect(inspectOptions({})).toBeUndefined();
    expect(inspectOptions({ inspect: '4300' })).toEqual({
      host: '127.0.0.1',
      port: 4300,
      commands: false,
    });
    expect(inspectOptions({ inspect: '[::1]:0', 'inspect-commands': true })).toEqual({
      host: '::1',
      port: 0,
      commands: true,
    });
    expect(inspectOptions({ 'inspect-commands': true })).toEqual({
      host: '127.0.0.1',
      port: DEFAULT_INSPECTOR_PORT,
      commands: true,
    });
  });

  it('is a usage error when it is not a port', () => {
    expect(() => inspectOptions({ inspect: 'nowhere' })).toThrow(UsageError);
    expect(() => inspectOptions({ inspect: '70000' })).toThrow(/not a port or host:port/);
  });
});
