import type { Writable } from 'node:stream';
import {
  DEFAULT_INSPECTOR_PORT,
  startInspector,
  type Inspector,
} from '../inspector/inspector-server.js';
import type { Logger } from '../logger.js';
import type { DomainNode } from '../node/domain-node.js';
import { UsageError, type FlagOptions } from './cli-io.js';

/** Where the inspector listens, and whether its page may send commands. */
export interface InspectOptions {
  /** Address to listen on; 127.0.0.1 unless `--inspect host:port` says otherwise. */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** `--inspect-commands`. */
  commands: boolean;
}

/** The inspector's flags, for parseArgs (after {@link withInspectDefault}). */
export const inspectFlags = {
  inspect: { type: 'string' },
  'inspect-commands': { type: 'boolean' },
} as const satisfies FlagOptions;

/** Help lines of the inspector's flags. */
export const inspectHelp = `Inspector (a web page showing the node live; see docs/visualising.md):
  --inspect [[host:]port]  serve it on 127.0.0.1:${DEFAULT_INSPECTOR_PORT} (or this port; 0 picks a free one) and
                           print its URL; it inspects the node only while a page is open
  --inspect-commands       let the page send commands (default: read-only); implies --inspect
`;

/**
 * `--inspect` takes an optional value, which parseArgs cannot express: a bare `--inspect` (not
 * followed by a port or `host:port`) becomes `--inspect=<default port>`.
 */
export function withInspectDefault(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] ?? '';
    if (arg === '--') {
      out.push(...argv.slice(index));
      break;
    }
    if (arg !== '--inspect') {
      out.push(arg);
      continue;
    }
    const next = argv[index + 1];
    if (next !== undefined && addressPattern.test(next)) {
      out.push(`--inspect=${next}`);
      index += 1;
    } else {
      out.push(`--inspect=${DEFAULT_INSPECTOR_PORT}`);
    }
  }
  return out;
}

const addressPattern = /^(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/;

/** The inspector's options from parsed flags; undefined when neither flag was given. */
export function inspectOptions(
  values: Record<string, string | boolean | undefined>,
): InspectOptions | undefined {
  const value = values.inspect;
  const commands = values['inspect-commands'] === true;
  if (value === undefined && !commands) return undefined;
  const text = typeof value === 'string' ? value : String(DEFAULT_INSPECTOR_PORT);
  const match = addressPattern.exec(text);
  const port = Number(match?.[2]);
  if (match === null || port > 65_535) {
    throw new UsageError(
      `--inspect ${JSON.stringify(text)} is not a port or host:port; e.g. --inspect ${DEFAULT_INSPECTOR_PORT}, --inspect 0 (any free port) or --inspect 127.0.0.1:${DEFAULT_INSPECTOR_PORT}.`,
    );
  }
  const host = match[1]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1';
  return { host, port, commands };
}

/** Starts the inspector of a CLI node and prints where to open it. */
export async function startCliInspector(
  node: DomainNode,
  options: InspectOptions,
  deps: { logger: Logger; title: string; out: Writable; command: string },
): Promise<Inspector> {
  const inspector = await startInspector({
    node,
    ...options,
    logger: deps.logger,
    title: deps.title,
  });
  const loopback = ['127.0.0.1', 'localhost', '::1'].includes(options.host);
  deps.out.write(
    `jetactor ${deps.command}: inspector at ${inspector.url} (${options.commands ? 'commands enabled' : 'read-only'}${loopback ? '' : `; listening on ${options.host}: anyone who reaches it sees every event`}).\n`,
  );
  return inspector;
}
