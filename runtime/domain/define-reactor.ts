import type { z } from 'zod';
import type { CommandRequest, CommandResult } from '../aggregate/command.js';
import type { Clock } from '../clock.js';
import { DefinitionError } from '../errors.js';
import type { Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
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
  /**
   * Sends a command to any hosted domain. Its command id is derived from the reactor, the event
   * and the order of sends in this handler, so handling the same event again never acts twice.
   */
  send(command: CommandRequest): Promise<CommandResult>;
}

/** A reactor handler. */
export type ReactorHandler<Event> = (event: Event, ctx: ReactorContext) => void | Promise<void>;

/** Handlers keyed by `'<Aggregate>.<Event>'`. */
export type ReactorHandlers<A extends AnyAggregateDefinition> = {
  [K in EventKey<A>]?: ReactorHandler<EventForKey<A, K>>;
};

/** Retry policy of a reactor. */
export interface ReactorRetry {
  /** Tries in all, including the first. */
  attempts: number;
  /** Delay before the second try, in milliseconds; doubles each time. */
  backoffMs: number;
}

/** A reactor: handlers run after events are stored, at least once, in order per aggregate. */
export interface ReactorDefinition<A extends AnyAggregateDefinition = AnyAggregateDefinition> {
  readonly kind: 'reactor';
  /** Reactor name: the durable consumer's name. */
  readonly name: string;
  /** The aggregates whose events it needs. */
  readonly aggregates: readonly A[];
  /** Handlers by `'<Aggregate>.<Event>'`. */
  readonly on: ReactorHandlers<A>;
  /** Retry policy. */
  readonly retry: ReactorRetry;
}

/** Options of {@link defineReactor}. */
export interface ReactorOptions<A extends AnyAggregateDefinition> {
  /** Name, unique in its domain: letters, digits, `_` or `-`. */
  name: string;
  /** The aggregates whose events it handles; gives the handlers their types. */
  aggregates: readonly A[];
  /** Handlers by `'<Aggregate>.<Event>'`. */
  on: ReactorHandlers<A>;
  /** Retry policy; default 5 tries from 100 ms. */
  retry?: Partial<ReactorRetry>;
}

/** Defines a reactor; keys of `on` are checked against the aggregates' events. */
export function defineReactor<const A extends AnyAggregateDefinition>(
  options: ReactorOptions<A>,
): ReactorDefinition<A> {
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
  return Object.freeze({
    kind: 'reactor',
    name: options.name,
    aggregates: Object.freeze([...options.aggregates]),
    on: Object.freeze({ ...options.on }),
    retry: Object.freeze({ attempts: 5, backoffMs: 100, ...options.retry }),
  });
}
