import { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import { isJetactorError } from '../errors.js';
import { createClient } from '../messaging/client.js';
import { parseCommandArgs, parseTarget, runCommand, UsageError, type CliIO } from './cli-io.js';
import {
  connectNats,
  connectionFlags,
  connectionHelp,
  resolveConfig,
} from './connection-config.js';
import { clientFields, clientSchema } from './send-command.js';

const help = `Usage: jetactor state <domain>.<Aggregate>.<id> [--history] [options]

Prints the current state of an aggregate instance as one JSON line, asked of a node hosting the
domain (on <prefix>.view.<domain>.<Aggregate>.<id>):
{"lifecycle","value","context","version","position","mailboxDepth"}.
With --history, the events of the aggregate follow, one JSON line each, read from the domain's
JetStream stream.

  jetactor state bank.Account.acc-1 --history

Options:
  --history              also print the stored events, oldest first
  --timeout <ms>         wait for the node's reply (default 5000; env JETACTOR_TIMEOUT_MS)
  --retries <n>          tries after the first (default 3; env JETACTOR_RETRIES)

${connectionHelp}
Exit codes: 0 success, 1 error reply or no node, 2 usage or configuration error.
`;

/** `jetactor state <domain>.<Aggregate>.<id> [--history]`. */
export function stateCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'state', async () => {
    const args = parseCommandArgs(
      argv,
      {
        ...connectionFlags,
        history: { type: 'boolean' },
        timeout: { type: 'string' },
        retries: { type: 'string' },
      },
      help,
      io,
    );
    if (args === undefined) return 0;
    const [target, ...extra] = args.positionals;
    const stream = parseTarget(target, 'state');
    if (extra.length > 0) {
      throw new UsageError(`unexpected ${JSON.stringify(extra.join(' '))} after the target.`);
    }
    const config = await resolveConfig(clientSchema, clientFields, args.values, io.env);
    const nc = await connectNats(config, 'jetactor state');
    const client = createClient({
      connection: nc,
      prefix: config.prefix,
      timeoutMs: config.timeoutMs,
      retries: config.retries,
    });
    try {
      const view = await client.view(stream.aggregate, stream.id, stream.domain);
      io.stdout.write(`${JSON.stringify(view)}\n`);
      if (args.values.history === true) {
        const store = await JetStreamEventStore.open({ connection: nc, prefix: config.prefix });
        try {
          for await (const commit of store.read(stream)) {
            for (const event of commit.events) io.stdout.write(`${JSON.stringify(event)}\n`);
          }
        } finally {
          await store.close();
        }
      }
      return 0;
    } catch (error) {
      if (!isJetactorError(error)) throw error;
      io.stderr.write(`error ${error.code}: ${error.message}\n`);
      return 1;
    } finally {
      client.close();
      await nc.close();
    }
  });
}
