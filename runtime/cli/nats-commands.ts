import type { CliIO } from './cli-io.js';
import { eventsCommand } from './events-command.js';
import { nodeCommand } from './node-command.js';
import { projectionCommand } from './projection-command.js';
import { queryCommand } from './query-command.js';
import { sendCommand } from './send-command.js';
import { stateCommand } from './state-command.js';

/** The CLI commands that talk to NATS; each parses its own options (`--help` on each). */
export const natsCommands: Readonly<
  Record<string, (argv: readonly string[], io: CliIO) => Promise<number>>
> = Object.freeze({
  node: nodeCommand,
  send: sendCommand,
  state: stateCommand,
  events: eventsCommand,
  query: queryCommand,
  projection: projectionCommand,
});
