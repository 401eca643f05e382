import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { describeError, isJetactorError } from '../errors.js';
import type { Logger } from '../logger.js';
import { createNode, type DomainNode } from '../node/domain-node.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import { CommandRouter } from '../messaging/command-router.js';
import { createNodeService } from '../messaging/node-service.js';
import type { ServiceResponder } from '../messaging/service-responder.js';
import { DEFAULT_PREFIX, commandSubject } from '../nats/subjects.js';
import { packageVersion } from './cli-io.js';
import { exampleCommand } from './example-command.js';
import { startCliInspector, type InspectOptions } from './inspect-option.js';
import type { Inspector } from '../inspector/inspector-server.js';
import { loadDomains } from './load-domains.js';
import { openBackend, type BackendOptions } from './open-backend.js';

/** Streams the dev console reads and writes; injected so tests can drive it. */
export interface DevIO {
  input: Readable;
  output: Writable;
  errors: Writable;
  interactive: boolean;
}

const help = `Commands, one per line:
  <Aggregate> <id> <command> [json input]    e.g. Aircraft ac-1 land {"airport":"CDG"}
  state <Aggregate> <id>                     the aggregate's state and version
  events <Aggregate> <id>                    its stored events
  stats                                      supervisor counters
  help | quit
Aggregates may be qualified by domain (flight.Aircraft). Replies are JSON lines on stdout;
errors go to stderr.`;

/**
 * `jetactor dev [domain modules…]`: a local node on the embedded default, hosting the given
 * domains (default: the bundled flight domain), with a console on stdin, and the live inspector
 * when `inspect` says where.
 */
export async function devCommand(
  specs: readonly string[],
  io: DevIO,
  logger: Logger,
  backendOptions: BackendOptions = {},
  inspect?: InspectOptions,
): Promise<number> {
  const domains = await loadDomains(specs.length > 0 ? specs : ['flight']);
  const backend = await openBackend(backendOptions, logger);
  const node = createNode({
    domains,
    logger,
    store: backend.store,
    ...(backend.snapshots === undefined ? {} : { snapshots: backend.snapshots }),
  });
  let router: CommandRouter | undefined;
  let service: ServiceResponder | undefined;
  let inspector: Inspector | undefined;
  try {
    await node.start();
    if (inspect !== undefined) {
      inspector = await startCliInspector(node, inspect, {
        logger,
        title: `${domains.map((d) => d.name).join(', ')} on ${backend.description}`,
        out: io.errors,
        command: 'dev',
      });
    }
    if (backend.connection !== undefined) {
      router = new CommandRouter({ node, connection: backend.connection, prefix: backend.prefix });
      await router.start();
      service = createNodeService({
        connection: backend.connection,
        node,
        router,
        prefix: backend.prefix,
        version: packageVersion(),
        logger,
      });
      await service.start();
    }
  } catch (error) {
    await inspector?.close();
    await service?.stop();
    await router?.stop(1_000);
    await node.stop(1_000);
    await backend.abandon();
    throw error;
  }
  const summary = domains
    .map((d) => `${d.name} (${Object.keys(d.aggregates).join(', ')})`)
    .join('; ');
  io.errors.write(
    `jetactor dev: local node on ${backend.description}, hosting ${summary}.\n` +
      `Try: ${example(node)}   (type "help" for more, Ctrl-D to stop)\n` +
      (backend.url === undefined ? '' : overNats(domains, backend.url, backend.prefix)),
  );
  const lines = createInterface({ input: io.input, terminal: false });
  let stopping = false;
  const stop = () => {
    stopping = true;
    lines.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (io.interactive) io.errors.write('> ');
  for await (const line of lines) {
    const done = await handleLine(node, line.trim(), io);
    if (done || stopping) break;
    if (io.interactive) io.errors.write('> ');
  }
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  // After "quit" the input may still be open (a pipe); stop reading it so the process can exit.
  lines.close();
  io.input.destroy();
  await inspector?.close();
  await router?.stop(5_000);
  const { interrupted } = await node.stop(5_000);
  await router?.settled();
  await service?.stop();
  await backend.close();
  io.errors.write(
    `jetactor dev: stopped${interrupted ? ` (${interrupted} commands interrupted)` : ''}.\n`,
  );
  return 0;
}

async function handleLine(node: DomainNode, line: string, io: DevIO): Promise<boolean> {
  if (line === '' || line.startsWith('#')) return false;
  const [first = '', second, third] = line.split(/\s+/);
  const print = (value: unknown) => io.output.write(`${JSON.stringify(value)}\n`);
  try {
    switch (first) {
      case 'quit':
      case 'exit':
        return true;
      case 'help':
        io.errors.write(`${help}\n`);
        return false;
      case 'stats':
        print(node.stats());
        return false;
      case 'state': {
        const [domain, aggregate] = qualified(second);
        print(await node.view(aggregate, second === undefined ? '' : (third ?? ''), domain));
        return false;
      }
      case 'events': {
        const [domain, aggregate] = qualified(second);
        const owner = node.domains.find(
          (d) => (domain === undefined || d.name === domain) && aggregate in d.aggregates,
        );
        await node.view(aggregate, third ?? '', domain);
        const events = [];
        if (owner !== undefined) {
          for await (const commit of node.store.read({
            domain: owner.name,
            aggregate,
            id: third ?? '',
          })) {
            events.push(...commit.events);
          }
        }
        print(events);
        return false;
      }
      default: {
        const [domain, aggregate] = qualified(first);
        const text = /^\S+\s+\S+\s+\S+\s*(.*)$/.exec(line)?.[1] ?? '';
        let input: unknown = {};
        if (text !== '') {
          try {
            input = JSON.parse(text);
          } catch (error) {
            io.errors.write(
              `error INVALID_COMMAND: the input is not JSON (${describeError(error)}): ${text}\n`,
            );
            return false;
          }
        }
        const result = await node.execute({
          ...(domain === undefined ? {} : { domain }),
          aggregate,
          id: second ?? '',
          command: third ?? '',
          input,
        });
        print(result);
        return false;
      }
    }
  } catch (error) {
    if (isJetactorError(error)) io.errors.write(`error ${error.code}: ${error.message}\n`);
    else io.errors.write(`error: ${describeError(error)}\n`);
    return false;
  }
}

function qualified(name: string | undefined): [string | undefined, string] {
  const value = name ?? '';
  const dot = value.indexOf('.');
  return dot < 0 ? [undefined, value] : [value.slice(0, dot), value.slice(dot + 1)];
}

/** How to reach the dev node from other terminals. */
function overNats(domains: readonly DomainDefinition[], url: string, prefix: string): string {
  const { domain, aggregate, command, input } = exampleCommand(domains);
  const flags = `--nats ${url}${prefix === DEFAULT_PREFIX ? '' : ` --prefix ${prefix}`}`;
  return (
    `Commands over NATS at ${url} (from another terminal):\n` +
    `  jetactor send ${domain}.${aggregate}.demo-1 ${command} '${input}' ${flags}\n` +
    `  nats req ${commandSubject(prefix, { domain, aggregate, id: 'demo-1' }, command)} '${input}' --server ${url}\n`
  );
}

function example(node: DomainNode): string {
  const domain = node.domains[0];
  const aggregate = domain === undefined ? undefined : Object.values(domain.aggregates)[0];
  const command = aggregate === undefined ? undefined : Object.keys(aggregate.commands)[0];
  const schema = command === undefined ? undefined : aggregate?.commands[command]?.input;
  if (aggregate === undefined || command === undefined || schema === undefined) return 'help';
  return `${aggregate.name} demo-1 ${command} ${JSON.stringify(sampleInput(schema))}`;
}

/** An input that passes the schema, filling each missing required field with a sample value. */
function sampleInput(schema: { safeParse(value: unknown): unknown }): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  const samples: Record<string, unknown> = { string: 'text', number: 1, boolean: true };
  const parsed = schema.safeParse(input) as {
    success: boolean;
    error?: { issues: { path: PropertyKey[]; expected?: string }[] };
  };
  for (const issue of parsed.success ? [] : (parsed.error?.issues ?? [])) {
    const key = issue.path[0];
    if (typeof key === 'string') input[key] = samples[issue.expected ?? ''] ?? null;
  }
  return input;
}
