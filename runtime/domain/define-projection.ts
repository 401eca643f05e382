import { z } from 'zod';
import type { Clock } from '../clock.js';
import { DefinitionError } from '../errors.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';
import type { Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
import {
  kvReadModel,
  type AnyReadModelSpec,
  type DocumentReadModel,
  type ReadModelWriter,
} from '../projections/read-model.js';
import type { AnyAggregateDefinition } from './define-aggregate.js';
import type { DeadLetterPolicy, EventForKey, EventKey, ReactorRetry } from './define-reactor.js';

/** What a projection handler gets besides the event: its store's writer plus these. */
export type ProjectionContext<W> = W & {
  /** Logger bound to the projection and the event. */
  logger: Logger;
  /** The injected clock. */
  clock: Clock;
  /** Position (stream sequence) of the commit that holds the event. */
  position: number;
  /** Which try this is: 1 for the first, 2 for the first retry, … */
  attempt: number;
};

/**
 * A projection handler: changes the read model for one event. What its promise resolves to is
 * ignored, so `(e, { sql }) => sql.query(…)` works as it reads.
 */
export type ProjectionHandler<Event, W> = (
  event: Event,
  ctx: ProjectionContext<W>,
) => void | Promise<unknown>;

/** Handlers keyed by `'<Aggregate>.<Event>'`, with the store's writer in their context. */
export type ProjectionHandlers<A extends AnyAggregateDefinition, W> = {
  [K in EventKey<A>]?: ProjectionHandler<EventForKey<A, K>, W>;
};

/**
 * A projection: builds a read model from a domain's events, in stream order, and keeps the
 * position of the last applied commit with the read model, so applying is idempotent.
 */
export interface ProjectionDefinition<
  A extends AnyAggregateDefinition = AnyAggregateDefinition,
  S extends AnyReadModelSpec = AnyReadModelSpec,
> {
  readonly kind: 'projection';
  /** Name, unique among the domain's reactors and projections. */
  readonly name: string;
  /** The aggregates whose events it reads. */
  readonly aggregates: readonly A[];
  /** Handlers by `'<Aggregate>.<Event>'`. */
  readonly on: ProjectionHandlers<A, ReadModelWriter<S>>;
  /** Where the read model is kept. */
  readonly store: S;
  /** Version of the handlers and store; a node finding a read model of another version rebuilds it. */
  readonly version: number;
  /** Retry policy of a failing handler. */
  readonly retry: Readonly<ReactorRetry>;
  /** What happens after an event was dead-lettered: `'wait'` halts the projection, `'skip'` goes on. */
  readonly deadLetters: DeadLetterPolicy;
}

/** Any projection definition. */
export type AnyProjectionDefinition = ProjectionDefinition<any, any>;

/** Options of {@link defineProjection}. */
export interface ProjectionOptions<A extends AnyAggregateDefinition, S extends AnyReadModelSpec> {
  /** Name, unique among the domain's reactors and projections: letters, digits, `_` or `-`. */
  name: string;
  /** The aggregates whose events it handles; gives the handlers their types. */
  aggregates: readonly A[];
  /** Where the read model is kept; default {@link kvReadModel}() (NATS KV). */
  store?: S;
  /** Handlers by `'<Aggregate>.<Event>'`: `async (event, ctx) => …` with `ctx.documents` or `ctx.sql`. */
  on: ProjectionHandlers<A, ReadModelWriter<S>>;
  /**
   * Version of the projection (a positive integer, default 1). Raise it when the handlers change
   * what they write: a node that finds the read model built by another version drops it and
   * rebuilds it from the start of the stream.
   */
  version?: number;
  /** Retry policy of a failing handler; default 5 tries from 100 ms, doubling, at most 30 s apart. */
  retry?: Partial<ReactorRetry>;
  /**
   * After an event was dead-lettered: `'wait'` (the default) halts the projection until the dead
   * letter is replayed or discarded, so the read model never misses an event silently; `'skip'`
   * leaves the event out and goes on.
   */
  deadLetters?: DeadLetterPolicy;
}

const settingsSchema = z.object({
  version: z.number().int().min(1).default(1),
  retry: z
    .object({
      attempts: z.number().int().min(1).max(100).default(5),
      backoffMs: z.number().int().nonnegative().default(100),
      maxBackoffMs: z.number().int().nonnegative().default(30_000),
    })
    .strict()
    .prefault({}),
  deadLetters: z.enum(['wait', 'skip']).default('wait'),
});

/**
 * Defines a projection. Keys of `on` are checked against the aggregates' events; handlers are
 * typed by the event and by the store (`ctx.documents` for {@link kvReadModel}, `ctx.sql` for
 * `postgresReadModel`).
 *
 * @example
 * defineProjection({
 *   name: 'balances',
 *   aggregates: [Account],
 *   on: {
 *     'Account.Deposited': async (event, { documents }) => {
 *       const doc = (await documents.get(event.meta.aggregateId)) ?? { balance: 0 };
 *       await documents.put(event.meta.aggregateId, { balance: doc.balance + event.data.amount });
 *     },
 *   },
 * });
 */
export function defineProjection<
  const A extends AnyAggregateDefinition,
  S extends AnyReadModelSpec = DocumentReadModel<unknown>,
>(options: ProjectionOptions<A, S>): ProjectionDefinition<A, S> {
  const knownOptions = ['name', 'aggregates', 'store', 'on', 'version', 'retry', 'deadLetters'];
  const unknown = unknownOptions(options, knownOptions);
  if (unknown.length > 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Projection ${JSON.stringify(options.name)}: ${describeUnknownOptions(unknown, knownOptions)}.`,
      { details: { unknown } },
    );
  }
  if (typeof options.name !== 'string' || !isIdentifier(options.name)) {
    throw new DefinitionError(
      'INVALID_NAME',
      `Projection name ${JSON.stringify(options.name)} is not valid: use letters, digits, "_" or "-", starting with a letter (it names a bucket, a consumer and subjects).`,
    );
  }
  if (!Array.isArray(options.aggregates) || options.aggregates.length === 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Projection "${options.name}" has no aggregates: pass aggregates: [MyAggregate], the aggregates whose events it reads.`,
    );
  }
  const known = new Set(
    options.aggregates.flatMap((a) => Object.keys(a.events).map((e) => `${a.name}.${e}`)),
  );
  const handlers = Object.entries(options.on ?? {});
  if (handlers.length === 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Projection "${options.name}" has no handlers: give on: { '<Aggregate>.<Event>': async (event, ctx) => … }.`,
    );
  }
  for (const [key, handler] of handlers) {
    if (!known.has(key)) {
      throw new DefinitionError(
        'UNDECLARED_EVENT',
        `Projection "${options.name}" handles ${JSON.stringify(key)}, which none of its aggregates declares; keys are "<Aggregate>.<Event>", one of: ${[...known].join(', ')}.`,
      );
    }
    if (typeof handler !== 'function') {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Projection "${options.name}": the handler of "${key}" is not a function.`,
      );
    }
  }
  const store = options.store ?? (kvReadModel() as AnyReadModelSpec as S);
  if (store?.kind !== 'documents' && store?.kind !== 'postgres') {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Projection "${options.name}": store must be made with kvReadModel() or postgresReadModel({ migrate }).`,
    );
  }
  const settings = settingsSchema.safeParse({
    version: options.version,
    retry: options.retry ?? {},
    deadLetters: options.deadLetters,
  });
  if (!settings.success) {
    const issues = settings.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Projection "${options.name}" has invalid settings: ${issues.join('; ')}. version is a positive integer, retry.attempts 1 to 100, delays whole milliseconds, deadLetters 'wait' or 'skip'.`,
      { details: { issues: settings.error.issues } },
    );
  }
  const { version, retry, deadLetters } = settings.data;
  return Object.freeze({
    kind: 'projection',
    name: options.name,
    aggregates: Object.freeze([...options.aggregates]),
    on: Object.freeze({ ...options.on }),
    store,
    version,
    retry: Object.freeze({ ...retry, maxBackoffMs: Math.max(retry.maxBackoffMs, retry.backoffMs) }),
    deadLetters,
  });
}
