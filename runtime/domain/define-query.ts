import type { z } from 'zod';
import type { Clock } from '../clock.js';
import { DefinitionError } from '../errors.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';
import type { Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
import type { ReadModelReader } from '../projections/read-model.js';
import { isZodSchema } from './define-aggregate.js';
import type { AnyProjectionDefinition } from './define-projection.js';

/** What a query handler can use besides its input. */
export interface QueryContext {
  /**
   * The read model of a projection of the same domain: documents (`get`, `keys`, `list`) for a
   * `kvReadModel`, a read-only `query(sql, values)` for a `postgresReadModel`.
   */
  readModel<P extends AnyProjectionDefinition>(projection: P): ReadModelReader<P['store']>;
  /** Logger bound to the query. */
  logger: Logger;
  /** The injected clock. */
  clock: Clock;
}

/** A query: validated input in, a plain value out, answered from read models. */
export interface QueryDefinition<
  N extends string = string,
  I extends z.ZodType = z.ZodType,
  O = unknown,
> {
  readonly kind: 'query';
  /** Name: the last token of `<prefix>.qry.<domain>.<name>`. */
  readonly name: N;
  /** zod schema of the input; a failing input is refused with `VALIDATION_FAILED`. */
  readonly input: I;
  /**
   * The projections it reads; `waitFor` waits for these. Undefined: all of the domain's
   * projections.
   */
  readonly projections: readonly AnyProjectionDefinition[] | undefined;
  /** Answers the query. */
  readonly handler: (input: z.output<I>, ctx: QueryContext) => O | Promise<O>;
}

/** Any query definition. */
export type AnyQueryDefinition = QueryDefinition<string, any, any>;

/** The input a query accepts (before its schema's defaults and transforms). */
export type QueryInput<Q> = Q extends QueryDefinition<any, infer I, any> ? z.input<I> : never;

/** What a query returns. */
export type QueryOutput<Q> = Q extends QueryDefinition<any, any, infer O> ? O : never;

/** Options of {@link defineQuery}. */
export interface QueryOptions<N extends string, I extends z.ZodType, O> {
  /** Letters, digits, `_` or `-`, starting with a letter; unique in its domain. */
  name: N;
  /** zod schema of the input. */
  input: I;
  /** The projections it reads (default: all of its domain's); `waitFor` waits for these. */
  projections?: readonly AnyProjectionDefinition[];
  /** Answers from read models: `async (input, ctx) => ctx.readModel(balances).get(input.owner)`. */
  handler: (input: z.output<I>, ctx: QueryContext) => O | Promise<O>;
}

/**
 * Defines a query, hosted by a domain (`defineDomain({ queries })`) and answered by the nodes
 * hosting it on `<prefix>.qry.<domain>.<name>`, in process with `node.query()`, or remotely with
 * `client.query()` and `jetactor query`. The output must be a plain value (JSON or msgpack).
 */
export function defineQuery<const N extends string, I extends z.ZodType, O>(
  options: QueryOptions<N, I, O>,
): QueryDefinition<N, I, Awaited<O>> {
  const knownOptions = ['name', 'input', 'projections', 'handler'];
  const unknown = unknownOptions(options, knownOptions);
  if (unknown.length > 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Query ${JSON.stringify(options.name)}: ${describeUnknownOptions(unknown, knownOptions)}.`,
      { details: { unknown } },
    );
  }
  if (typeof options.name !== 'string' || !isIdentifier(options.name)) {
    throw new DefinitionError(
      'INVALID_NAME',
      `Query name ${JSON.stringify(options.name)} is not valid: use letters, digits, "_" or "-", starting with a letter (it ends the query's subject).`,
    );
  }
  if (!isZodSchema(options.input)) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Query "${options.name}": input must be a zod schema, e.g. z.object({ owner: z.string() }).`,
    );
  }
  if (typeof options.handler !== 'function') {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Query "${options.name}": handler must be a function (input, ctx) => result.`,
    );
  }
  if (
    options.projections !== undefined &&
    (!Array.isArray(options.projections) ||
      options.projections.some((p) => (p as { kind?: unknown } | undefined)?.kind !== 'projection'))
  ) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Query "${options.name}": projections must list projections made with defineProjection.`,
    );
  }
  return Object.freeze({
    kind: 'query',
    name: options.name,
    input: options.input,
    projections:
      options.projections === undefined ? undefined : Object.freeze([...options.projections]),
    handler: options.handler as (input: unknown, ctx: QueryContext) => Promise<Awaited<O>>,
  });
}
