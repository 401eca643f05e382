import { describeError, isJetactorError } from '../errors.js';
import { createClient } from '../messaging/client.js';
import { isIdentifier } from '../names.js';
import { parseCommandArgs, runCommand, UsageError, type CliIO } from './cli-io.js';
import {
  connectNats,
  connectionFlags,
  connectionHelp,
  resolveConfig,
} from './connection-config.js';
import { clientFields, clientSchema } from './send-command.js';

const help = `Usage: jetactor query <domain>.<name> [json input] [options]

Runs a query on a node hosting the domain (over NATS, on <prefix>.qry.<domain>.<name>) and prints
its result as one JSON line on stdout. An error reply prints "error <CODE>: <message>" on stderr and
exits 1 (VALIDATION_FAILED names the bad field). The input defaults to {}.

  jetactor query bank.balance '{"account":"acc-1"}'
  jetactor query bank.balance '{"account":"acc-1"}' --wait-for 42

Read your writes: "jetactor send" prints the commit's "position"; --wait-for <position> answers
only once the projections the query reads have applied it (PROJECTION_BEHIND, retryable, when
they do not within --wait-timeout).

Options:
  --wait-for <position>  answer once the query's projections reached this stream position
  --wait-timeout <ms>    how long the node may wait for it (default: the node's, 5000)
  --timeout <ms>         wait for each try's reply (default 5000; env JETACTOR_TIMEOUT_MS)
  --retries <n>          tries after the first on timeouts and retryable errors (default 3;
                         env JETACTOR_RETRIES)

${connectionHelp}
Exit codes: 0 success, 1 error reply or no node, 2 usage or configuration error.
`;

/** `jetactor query <domain>.<name> [json] [--wait-for <position>]`. */
export function queryCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'query', async () => {
    const args = parseCommandArgs(
      argv,
      {
        ...connectionFlags,
        'wait-for': { type: 'string' },
        'wait-timeout': { type: 'string' },
        timeout: { type: 'string' },
        retries: { type: 'string' },
      },
      help,
      io,
    );
    if (args === undefined) return 0;
    const [target, json, ...extra] = args.positionals;
    const [domain = '', name = '', ...rest] = (target ?? '').split('.');
    if (target === undefined || rest.length > 0 || !isIdentifier(domain) || !isIdentifier(name)) {
      throw new UsageError(
        `${target === undefined ? 'the query is missing' : `${JSON.stringify(target)} is not <domain>.<query>`}; e.g. jetactor query bank.balance '{"account":"acc-1"}'.`,
      );
    }
    if (extra.length > 0) {
      throw new UsageError(
        `unexpected ${JSON.stringify(extra.join(' '))}; quote the JSON input as one argument: '{"account":"acc-1"}'.`,
      );
    }
    let input: unknown = {};
    if (json !== undefined && json.trim() !== '') {
      try {
        input = JSON.parse(json);
      } catch (error) {
        throw new UsageError(
          `the input ${JSON.stringify(json)} is not JSON (${describeError(error)}); quote it for the shell: '{"account":"acc-1"}'.`,
        );
      }
    }
    const whole = (flag: string): number | undefined => {
      const value = args.values[flag];
      if (value === undefined) return undefined;
      if (typeof value !== 'string' || !/^\d{1,15}$/.test(value)) {
        throw new UsageError(`--${flag} ${JSON.stringify(value)} is not a whole number.`);
      }
      return Number(value);
    };
    const waitFor = whole('wait-for');
    const waitTimeoutMs = whole('wait-timeout');
    if (waitTimeoutMs !== undefined && waitFor === undefined) {
      throw new UsageError('--wait-timeout goes with --wait-for <position>.');
    }
    const config = await resolveConfig(clientSchema, clientFields, args.values, io.env);
    const nc = await connectNats(config, 'jetactor query');
    const client = createClient({
      connection: nc,
      prefix: config.prefix,
      timeoutMs: config.timeoutMs,
      retries: config.retries,
    });
    try {
      const result = await client.query(domain, name, input, {
        ...(waitFor === undefined ? {} : { waitFor }),
        ...(waitTimeoutMs === undefined ? {} : { waitTimeoutMs }),
      });
      io.stdout.write(`${JSON.stringify(result ?? null)}\n`);
      return 0;
    } catch (error) {
      if (!isJetactorError(error)) throw error;
      io.stderr.write(`error ${error.code}: ${error.message}\n`);
      if (error.details !== undefined) {
        io.stderr.write(`details: ${JSON.stringify(error.details)}\n`);
      }
      return 1;
    } finally {
      client.close();
      await nc.close();
    }
  });
}
