import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeError, isJetactorError } from '../errors.js';
import { isPermissionViolation, permissionDenied } from '../nats/permission-denied.js';

/** What a CLI command reads and writes; injected so tests can drive it. */
export interface CliIO {
  /** Where results go (JSON lines, logs of `jetactor node`). */
  stdout: Writable;
  /** Where errors, notices and banners go. */
  stderr: Writable;
  /** Environment variables. */
  env: NodeJS.ProcessEnv;
  /** True when stdout is a terminal (pretty logs). */
  stdoutIsTTY: boolean;
}

/** The process's own streams and environment. */
export function processIO(): CliIO {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    stdoutIsTTY: process.stdout.isTTY === true,
  };
}

/** A wrong command line: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Options of `node:util` parseArgs. */
export type FlagOptions = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses a command's arguments strictly (unknown flags are usage errors). Returns undefined when
 * `--help` was given, after printing `help` on stdout.
 */
export function parseCommandArgs<O extends FlagOptions>(
  argv: readonly string[],
  options: O,
  help: string,
  io: CliIO,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    throw new UsageError(describeError(error));
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help === true) {
    io.stdout.write(help);
    return undefined;
  }
  return { values, positionals: parsed.positionals };
}

/**
 * Runs a command body and turns what it throws into an exit code: 2 for usage and configuration
 * errors, 1 for everything else; the message goes to stderr.
 */
export async function runCommand(
  io: CliIO,
  command: string,
  body: () => Promise<number>,
): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(
        `jetactor ${command}: ${error.message}\nRun "jetactor ${command} --help" for usage.\n`,
      );
      return 2;
    }
    const shown = isPermissionViolation(error)
      ? permissionDenied(error, `the request of jetactor ${command}`)
      : error;
    const code = isJetactorError(shown) ? `${shown.code}: ` : '';
    io.stderr.write(`jetactor ${command}: ${code}${describeError(shown)}\n`);
    return isJetactorError(shown) && (shown.kind === 'config' || shown.kind === 'definition')
      ? 2
      : 1;
  }
}

/** The jetactor package version. */
export function packageVersion(): string {
  // From runtime/cli/ in the sources, and from dist/runtime/cli/ once built.
  for (const candidate of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(candidate, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'jetactor' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Not there: try the next one.
    }
  }
  return '0.0.0';
}

/** `<domain>.<Aggregate>.<id>` → its three parts; a usage error names the bad argument. */
export function parseTarget(
  target: string | undefined,
  command: string,
): { domain: string; aggregate: string; id: string } {
  const parts = (target ?? '').split('.');
  const [domain, aggregate, id] = parts;
  if (parts.length !== 3 || !domain || !aggregate || !id) {
    throw new UsageError(
      `${target === undefined ? 'the target is missing' : `${JSON.stringify(target)} is not <domain>.<Aggregate>.<id>`}; e.g. jetactor ${command} bank.Account.acc-1${command === 'send' ? ' deposit \'{"amount":10}\'' : ''} (ids must not contain ".").`,
    );
  }
  return { domain, aggregate, id };
}
