import { describeError, isJetactorError } from '../errors.js';
import { createClient } from '../messaging/client.js';
import { parseCommandArgs, parseTarget, runCommand, UsageError, type CliIO } from './cli-io.js';
import {
  connectNats,
  connectionFields,
  connectionFlags,
  connectionHelp,
  connectionSchema,
  resolveConfig,
  wholeNumber,
  type FieldSource,
} from './connection-config.js';

const help = `Usage: jetactor send <domain>.<Aggregate>.<id> <command> [json input] [options]

Sends one command to the nodes hosting the domain (over NATS, on
<prefix>.cmd.<domain>.<Aggregate>.<id>.<command>) and prints the reply as one JSON line on stdout:
{"commandId","version","events","response","duplicate","position"} (position: the
stream sequence of the commit, for a query's --wait-for). An error reply prints
"error <CODE>: <message>" on stderr and exits 1. The input defaults to {}.

  jetactor send bank.Account.acc-1 open '{"owner":"ann"}'
  jetactor send bank.Account.acc-1 deposit '{"amount":10}' --command-id dep-1 --expected-version 1

Command options:
  --command-id <id>         idempotency key; resending the same id applies the command once
                            (default: a new id, kept across the client's retries)
  --expected-version <n>    refuse unless the aggregate is at version n (0 = new)
  --correlation-id <id>     correlation id recorded on the events
  --causation-id <id>       causation id recorded on the events
  --actor <name>            who sends the command, recorded on the events
  --timeout <ms>            wait for each try's reply (default 5000; env JETACTOR_TIMEOUT_MS)
  --retries <n>             tries after the first on timeouts and retryable errors (default 3;
                            env JETACTOR_RETRIES)

${connectionHelp}
Exit codes: 0 success, 1 error reply or no reply, 2 usage or configuration error.
`;

/** Client fields shared by `send` and `state`. */
export const clientFields: Record<string, FieldSource> = {
  ...connectionFields,
  timeoutMs: { flag: 'timeout', env: 'JETACTOR_TIMEOUT_MS' },
  retries: { flag: 'retries', env: 'JETACTOR_RETRIES' },
};

/** Schema of {@link clientFields}. */
export const clientSchema = connectionSchema.extend({
  timeoutMs: wholeNumber(10).default(5_000),
  retries: wholeNumber(0, 100).default(3),
});

/** `jetactor send <domain>.<Aggregate>.<id> <command> [json]`. */
export function sendCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'send', async () => {
    const args = parseCommandArgs(
      argv,
      {
        ...connectionFlags,
        'command-id': { type: 'string' },
        'expected-version': { type: 'string' },
        'correlation-id': { type: 'string' },
        'causation-id': { type: 'string' },
        actor: { type: 'string' },
        timeout: { type: 'string' },
        retries: { type: 'string' },
      },
      help,
      io,
    );
    if (args === undefined) return 0;
    const [target, command, json, ...extra] = args.positionals;
    const { domain, aggregate, id } = parseTarget(target, 'send');
    if (command === undefined) {
      throw new UsageError(
        `name the command after the target, e.g. jetactor send ${target} deposit '{"amount":10}'.`,
      );
    }
    if (extra.length > 0) {
      throw new UsageError(
        `unexpected ${JSON.stringify(extra.join(' '))}; quote the JSON input as one argument: '{"amount":10}'.`,
      );
    }
    let input: unknown = {};
    if (json !== undefined && json.trim() !== '') {
      try {
        input = JSON.parse(json);
      } catch (error) {
        throw new UsageError(
          `the input ${JSON.stringify(json)} is not JSON (${describeError(error)}); quote it for the shell: '{"amount":10}'.`,
        );
      }
    }
    const version = args.values['expected-version'];
    if (version !== undefined && !/^\d+$/.test(String(version))) {
      throw new UsageError(
        `--expected-version ${JSON.stringify(version)} is not a version; give a whole number (0 for a new aggregate).`,
      );
    }
    const config = await resolveConfig(clientSchema, clientFields, args.values, io.env);
    const nc = await connectNats(config, 'jetactor send');
    const client = createClient({
      connection: nc,
      prefix: config.prefix,
      timeoutMs: config.timeoutMs,
      retries: config.retries,
    });
    const optional = (flag: string) => {
      const value = args.values[flag];
      return typeof value === 'string' ? value : undefined;
    };
    try {
      const result = await client.execute({
        domain,
        aggregate,
        id,
        command,
        input,
        commandId: optional('command-id'),
        expectedVersion: version === undefined ? undefined : Number(version),
        correlationId: optional('correlation-id'),
        causationId: optional('causation-id'),
        actor: optional('actor'),
      });
      io.stdout.write(`${JSON.stringify(result)}\n`);
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
