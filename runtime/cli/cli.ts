import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { describeError, isJetactorError } from '../errors.js';
import { createLogger, type LogLevel } from '../logger.js';
import { devCommand } from './dev-command.js';
import { processIO } from './cli-io.js';
import { vizCommand } from './viz-command.js';
import { natsCommands } from './nats-commands.js';
import { deadlettersCommand } from './deadletters-command.js';
import { permissionsCommand } from './permissions-command.js';
import {
  inspectFlags,
  inspectOptions,
  withInspectDefault,
  type InspectOptions,
} from './inspect-option.js';

const usage = `Usage: jetactor <command> [options]

Commands:
  dev [domain modules…]   run a local node with a command console (default domain: the
                          bundled flight domain; "bank" is bundled too). Events go to an
                          embedded nats-server (store .jetactor/nats) when nats-server is
                          installed, else to memory. On NATS it also serves the commands
                          over NATS (jetactor send) and prints the URL to use.
                          --inspect [[host:]port] serves the live inspector page
                          (default 127.0.0.1:4280), --inspect-commands lets it send commands.
  node <domain modules…>  run a node serving the domains' commands over NATS (one or many
                          processes per domain); see jetactor node --help
  send <domain>.<Aggregate>.<id> <command> [json]
                          send a command to the nodes and print the reply
  state <domain>.<Aggregate>.<id> [--history]
                          print an aggregate's state (and its events) from a node
  events <domain> [--aggregate X] [--id Y] [--follow]
                          print a domain's stored events as JSON lines
  query <domain>.<name> [json] [--wait-for <position>]
                          run a query on the nodes and print its result
  projection status|rebuild <domain>.<projection>
                          projections' progress (lag) per node, or drop a read model and
                          build it again from the start of the stream (progress on stderr)
  deadletters list|replay <id>|discard <id>
                          list reactors' dead letters (JSON lines), replay one through
                          its reactor on a running node, or discard it
  permissions <domain modules…>
                          print a nats-server authorization block: admin, client and one
                          node user per domain, each allowed only what it needs
  viz <domain modules…>   draw aggregate state machines (mermaid, dot, svg, json); "runtime"
                          draws the runtime's own; see jetactor viz --help
  help                    show this help
  version                 print the version

Options:
  --nats <url>            use this NATS server instead of an embedded one (env NATS_URL)
  --memory                use the in-memory store (nothing is kept)
  --data <dir>            store directory of the embedded nats-server (default .jetactor/nats)
  --prefix <name>         stream and subject prefix (default jetactor)
  --log-level <level>     fatal|error|warn|info|debug|trace|silent (default warn,
                          or JETACTOR_LOG_LEVEL)
`;

const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Runs the CLI; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'viz') return vizCommand(argv.slice(1), processIO()); // parses its own options
  if (argv[0] === 'deadletters') return deadlettersCommand(argv.slice(1), processIO()); // own options
  if (argv[0] === 'permissions') return permissionsCommand(argv.slice(1), processIO()); // own options
  const natsCommand = natsCommands[argv[0] ?? ''];
  if (natsCommand !== undefined) return natsCommand(argv.slice(1), processIO()); // own options
  let parsed;
  let inspect: InspectOptions | undefined;
  try {
    parsed = parseArgs({
      args: withInspectDefault(argv),
      allowPositionals: true,
      options: {
        'log-level': { type: 'string' },
        nats: { type: 'string' },
        memory: { type: 'boolean' },
        data: { type: 'string' },
        prefix: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
        ...inspectFlags,
      },
    });
    inspect = inspectOptions(parsed.values);
  } catch (error) {
    process.stderr.write(`jetactor: ${describeError(error)}\n\n${usage}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.version || command === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (values.help || command === 'help' || command === undefined) {
    (command === undefined && !values.help ? process.stderr : process.stdout).write(usage);
    return command === undefined && !values.help ? 2 : 0;
  }
  const level = values['log-level'];
  if (level !== undefined && !levels.includes(level)) {
    process.stderr.write(
      `jetactor: --log-level ${JSON.stringify(level)} is not one of ${levels.join(', ')}.\n`,
    );
    return 2;
  }
  const logger = createLogger(level as LogLevel | undefined);
  try {
    switch (command) {
      case 'dev':
        return await devCommand(
          rest,
          {
            input: process.stdin,
            output: process.stdout,
            errors: process.stderr,
            interactive: process.stdin.isTTY === true,
          },
          logger,
          {
            natsUrl: values.nats ?? (process.env.NATS_URL || undefined),
            memory: values.memory,
            dataDir: values.data,
            prefix: values.prefix,
          },
          inspect,
        );
      default:
        process.stderr.write(`jetactor: unknown command ${JSON.stringify(command)}.\n\n${usage}`);
        return 2;
    }
  } catch (error) {
    const code = isJetactorError(error) ? `${error.code}: ` : '';
    process.stderr.write(`jetactor: ${code}${describeError(error)}\n`);
    return 1;
  }
}

function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
  ) as { version: string };
  return pkg.version;
}

// A reader that goes away (`jetactor events bank | head`) ends a command quietly, as it ends other
// command-line tools; a node or dev console keeps serving without its stdout.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  if (!['node', 'dev'].includes(process.argv[2] ?? '')) process.exit(0);
});

process.exitCode = await main(process.argv.slice(2));
