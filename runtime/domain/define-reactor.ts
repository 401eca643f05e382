import { z } from 'zod';
import type { CommandRequest, CommandResult } from '../aggregate/command.js';
import type { Clock } from '../clock.js';
import { DefinitionError } from '../errors.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';
import type { Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
import type { AggregateRef } from '../node/domain-node.js';
import type { AggregateDefinition, AnyAggregateDefinition } from './define-aggregate.js';
import type { EventMetadata, EventSchemas } from './events.js';

/** `'<Aggregate>.<Event>'` for every event of the given aggregates. */
export type EventKey<A> =
  A extends AggregateDefinition<infer N, infer E, any, any> ? `${N}.${keyof E & string}` : never;

/** The typed event delivered for an `'<Aggregate>.<Event>'` key. */
export type EventForKey<A, K> =
  A extends AggregateDefinition<infer N, infer E extends EventSchemas, any, any>
    ? K extends `${N}.${infer T}`
      ? T extends keyof E & string
        ? { type: T; data: z.output<E[T]>; meta: EventMetadata }
        : never
      : never
    : never;

/** What a reactor handler can use besides the event. */
export interface ReactorContext {
  /** Logger bound to the reactor and the event. */
  logger: Logger;
  /** The injected clock. */
  clock: Clock;
  /** Which try this is: 1 for the first, 2 for the first retry, … */
  attempt: number;
  /**
   * Sends a command to any domain: hosted ones run on this node, others go through the node's
   * `reactors.send` option. Its command id is derived from the reactor, the event and the order
   * of sends in this handler (`<reactor>:<domain>/<Aggregate>/<id>@<version>:<n>`), so handling
   * the same event again never acts twice. Its correlation id is the event's, its causation id
   * the event's reference.
   */
  send(command: CommandRequest): Promise<CommandResult>;
  /**
   * Typed commands for one aggregate instance, sent like {@link ReactorContext.send}:
   * `await ctx.aggregate(Account, 'acc-1').deposit({ amount: 5 })`. Pass `domain` when the
   * aggregate's name is not unique among the domains the node can reach.
   */
  aggregate<T extends AnyAggregateDefinition>(
    definition: T,
    id: string,
    domain?: string,
  ): AggregateRef<T>;
}

/** A reactor handler. */
export type ReactorHandler<Event> = (event: Event, ctx: ReactorContext) => void | Promise<unknown>;

/** Handlers keyed by `'<Aggregate>.<Event>'`. */
export type ReactorHandlers<A extends AnyAggregateDefinition> = {
  [K in EventKey<A>]?: ReactorHandler<EventForKey<A, K>>;
};

/** Retry policy of a reactor. */
export interface ReactorRetry {
  /** Tries in all, including the first (at least 1). */
  attempts: number;
  /** Delay before the second try, in milliseconds; doubles each time. */
  backoffMs: number;
  /** Longest delay between two tries, in milliseconds. */
  maxBackoffMs: number;
}

/**
 * What happens to the later events of an aggregate once one of its events was dead-lettered:
 * `'skip'` handles them as usual; `'wait'` holds them until the dead letter is replayed or
 * discarded (the block survives restarts).
 */
export type DeadLetterPolicy = 'wait' | 'skip';

/** A reactor: handlers run after events are stored, at least once, in order per aggregate. */
export interface ReactorDefinition<A extends AnyAggregateDefinition = AnyAggregateDefinition> {
  readonly kind: 'reactor';
  /** Reactor name: part of its durable consumer's name. */
  readonly name: string;
  /** The aggregates whose events it needs. */
  readonly aggregates: readonly A[];
  /** Handlers by `'<Aggregate>.<Event>'`. */
  readonly on: ReactorHandlers<A>;
  /** Most handlers running at once, each for a different aggregate. */
  readonly concurrency: number;
  /** Retry policy. */
  readonly retry: Readonly<ReactorRetry>;
  /** What later events of an aggregate do after one of its events was dead-lettered. */
  readonly deadLetters: DeadLetterPolicy;
}

/** Options of {@link defineReactor}. */
export interface ReactorOptions<A extends AnyAggregateDefinition> {
  /** Name, unique in its domain: letters, digits, `_` or `-`. */
  name: string;
  /** The aggregates whose events it handles; gives the handlers their types. */
  aggregates: readonly A[];
  /** Handlers by `'<Aggregate>.<Event>'`. */
  on: ReactorHandlers<A>;
  /**
   * Most handlers running at once (1 to 1024), each for a different aggregate; events of one
   * aggregate always run one after another. Default 16.
   */
  concurrency?: number;
  /** Retry policy; default 5 tries from 100 ms, doubling, at most 30 s apart. */
  retry?: Partial<ReactorRetry>;
  /**
   * After an event is dead-lettered, later events of its aggregate are handled as usual
   * (`'skip'`, the default) or held until the dead letter is replayed or discarded (`'wait'`).
   */
  deadLetters?: DeadLetterPolicy;
}

const settingsSchema = z.object({
  concurrency: z.number().int().min(1).max(1024).default(16),
  retry: z
    .object({
      attempts: z.number().int().min(1).max(100).default(5),
      backoffMs: z.number().int().nonnegative().default(100),
      maxBackoffMs: z.number().int().nonnegative().default(30_000),
    })
    .strict()
    .prefault({}),
  deadLetters: z.enum(['wait', 'skip']).default('skip'),
});

/** Defines a reactor; keys of `on` are checked against the aggregates' events. */
export function defineReactor<const A extends AnyAggregateDefinition>(
  options: ReactorOptions<A>,
): ReactorDefinition<A> {
  const knownOptions = ['name', 'aggregates', 'on', 'concurrency', 'retry', 'deadLetters'];
  const unknown = unknownOptions(options, knownOptions);
  if (unknown.length > 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Reactor ${JSON.stringify(options.name)}: ${describeUnknownOptions(unknown, knownOptions)}.`,
      { details: { unknown } },
    );
  }
  if (!isIdentifier(options.name)) {
    throw new DefinitionError(
      'INVALID_NAME',
      `Reactor name ${JSON.stringify(options.name)} is not valid: use letters, digits, "_" or "-", starting with a letter.`,
    );
  }
  const known = new Set(
    options.aggregates.flatMap((a) => Object.keys(a.events).map((e) => `${a.name}.${e}`)),
  );
  for (const [key, handler] of Object.entries(options.on)) {
    if (!known.has(key)) {
      throw new DefinitionError(
        'UNDECLARED_EVENT',
        `Reactor "${options.name}" handles ${JSON.stringify(key)}, which none of its aggregates declares; keys are "<Aggregate>.<Event>", one of: ${[...known].join(', ')}.`,
      );
    }
    if (typeof handler !== 'function') {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Reactor "${options.name}": the handler of "${key}" is not a function.`,
      );
    }
  }
  const settings = settingsSchema.safeParse({
    concurrency: options.concurrency,
    retry: options.retry ?? {},
    deadLetters: options.deadLetters,
  });
  if (!settings.success) {
    const issues = settings.error.issues.map(
      (i) => `${i.path.join('.')} ${JSON.stringify(valueAt(options, i.path))}: ${i.message}`,
    );
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Reactor "${options.name}" has invalid settings: ${issues.join('; ')}. concurrency is 1 to 1024, retry.attempts 1 to 100, delays whole milliseconds, deadLetters 'wait' or 'skip'.`,
      { details: { issues: settings.error.issues } },
    );
  }
  const { concurrency, retry, deadLetters } = settings.data;
  return Object.freeze({
    kind: 'reactor',
    name: options.name,
    aggregates: Object.freeze([...options.aggregates]),
    on: Object.freeze({ ...options.on }),
    concurrency,
    retry: Object.freeze({ ...retry, maxBackoffMs: Math.max(retry.maxBackoffMs, retry.backoffMs) }),
    deadLetters,
  });
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    current =
      typeof current === 'object' && current !== null
        ? (current as Record<PropertyKey, unknown>)[key]
        : undefined;
  }
  return current;
}
