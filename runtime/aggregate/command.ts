import type { StoredEvent } from '../domain/events.js';

/** Options a caller may add to any command. All optional. */
export interface CommandOptions {
  /** Idempotency key: resending a command id already stored returns the first result. Generated when absent. */
  commandId?: string;
  /** Reject with `WRONG_EXPECTED_VERSION` unless the aggregate is at exactly this version (0 = new). */
  expectedVersion?: number;
  /** Correlation id copied to every event; defaults to the command id. */
  correlationId?: string;
  /** What caused this command (e.g. an event id); defaults to the command id. */
  causationId?: string;
  /** Who sends the command (user or service), recorded on the events. */
  actor?: string;
  /**
   * How long the sender waits for the reply, in milliseconds. A command that has not started by
   * then is not run: it is answered `DEADLINE_EXCEEDED` (retryable) and stores nothing, so a copy
   * held up somewhere cannot be applied after its sender gave up and sent it again (the aggregate
   * remembers only its last `recentCommands` ids). The typed client sends its per-try timeout.
   */
  timeoutMs?: number;
}

/** A command addressed by names, as it arrives from code, the CLI or the network. */
export interface CommandRequest extends CommandOptions {
  /** Domain name; may be omitted when only one hosted domain has this aggregate. */
  domain?: string;
  /** Aggregate type name, e.g. `Account`. */
  aggregate: string;
  /** Aggregate instance id (a NATS subject token). */
  id: string;
  /** Command name, e.g. `deposit`. */
  command: string;
  /** Command input, validated with the command's schema. */
  input?: unknown;
}

/** The reply to a command that succeeded. */
export interface CommandResult<R = unknown> {
  /** The command's id (the caller's, or the generated one). */
  commandId: string;
  /** The aggregate's version after the command. */
  version: number;
  /** Events stored by this command, with their metadata; empty when it changed nothing. */
  events: StoredEvent[];
  /** What `decide` returned as response; `undefined` when it returned only events. */
  response: R;
  /** True when the command id had already been applied and this is the first result again. */
  duplicate: boolean;
  /**
   * Position (stream sequence) of the commit holding the events, in the domain's stream; for a
   * command that stored nothing, the aggregate's last commit. Pass it as a query's `waitFor` to
   * read your own write.
   */
  position: number;
}

/** A validated command inside the runtime. */
export interface Command {
  domain: string;
  aggregate: string;
  aggregateId: string;
  name: string;
  input: unknown;
  id: string;
  expectedVersion: number | undefined;
  correlationId: string;
  causationId: string;
  actor: string | undefined;
  /** Time by the node's clock after which the command is not started (from `timeoutMs`). */
  deadline?: number | undefined;
}

/** The options of a request that sets none (shared: callers read them only). */
const NO_OPTIONS: { success: true; data: CommandOptions } = Object.freeze({
  success: true,
  data: Object.freeze({}),
});

/**
 * The options of a request that sets at most a valid command id and a timeout from
 * `minTimeoutMs` to `maxTimeoutMs` (nearly all do), checked without zod; undefined when it sets
 * more, or something the caller's zod schema should explain.
 */
export function plainCommandOptions(
  request: CommandRequest,
  minTimeoutMs: number,
  maxTimeoutMs: number,
): { success: true; data: CommandOptions } | undefined {
  if (
    request.expectedVersion !== undefined ||
    request.correlationId !== undefined ||
    request.causationId !== undefined ||
    request.actor !== undefined
  ) {
    return undefined;
  }
  const { commandId, timeoutMs } = request;
  if (
    timeoutMs !== undefined &&
    !(Number.isSafeInteger(timeoutMs) && timeoutMs >= minTimeoutMs && timeoutMs <= maxTimeoutMs)
  ) {
    return undefined;
  }
  if (commandId === undefined) {
    return timeoutMs === undefined ? NO_OPTIONS : { success: true, data: { timeoutMs } };
  }
  if (typeof commandId !== 'string' || commandId.length < 1 || commandId.length > 256) {
    return undefined;
  }
  return {
    success: true,
    data: timeoutMs === undefined ? { commandId } : { commandId, timeoutMs },
  };
}
