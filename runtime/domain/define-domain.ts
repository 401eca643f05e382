import { DefinitionError } from '../errors.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';
import { isIdentifier } from '../names.js';
import type { AnyAggregateDefinition } from './define-aggregate.js';
import type { AnyProjectionDefinition } from './define-projection.js';
import type { AnyQueryDefinition } from './define-query.js';
import type { ReactorDefinition } from './define-reactor.js';

/** Queries by name, from a union of query definitions. */
export type QueriesByName<Q extends AnyQueryDefinition> = {
  [K in Q['name']]: Extract<Q, { name: K }>;
};

/** A domain: aggregates and what reacts to them, with its own stream, subjects and buckets. */
export interface DomainDefinition<
  A extends AnyAggregateDefinition = AnyAggregateDefinition,
  Q extends AnyQueryDefinition = AnyQueryDefinition,
> {
  readonly kind: 'domain';
  /** Domain name: a subject token and the stream's name. */
  readonly name: string;
  /** Aggregate name → definition. */
  readonly aggregates: Readonly<Record<string, A>>;
  /** Reactors hosted with the domain. */
  readonly reactors: readonly ReactorDefinition[];
  /** Projections hosted with the domain (read models built from its events). */
  readonly projections: readonly AnyProjectionDefinition[];
  /** Query name → definition. */
  readonly queries: Readonly<QueriesByName<Q>>;
}

/** Options of {@link defineDomain}. */
export interface DomainOptions<
  A extends AnyAggregateDefinition,
  Q extends AnyQueryDefinition = AnyQueryDefinition,
> {
  /** Letters, digits, `_` or `-`, starting with a letter (e.g. `bank`). */
  name: string;
  /** The aggregates of the domain. */
  aggregates: readonly A[];
  /** Reactors run by nodes hosting the domain. */
  reactors?: readonly ReactorDefinition<any>[];
  /** Projections run by nodes hosting the domain (names unique among reactors and projections). */
  projections?: readonly AnyProjectionDefinition[];
  /** Queries answered by nodes hosting the domain. */
  queries?: readonly Q[];
}

/**
 * Groups aggregates and reactors under one name. Checks names, duplicates, and that every event
 * a reactor handles belongs to an aggregate of this domain.
 */
export function defineDomain<
  const A extends AnyAggregateDefinition,
  const Q extends AnyQueryDefinition = never,
>(options: DomainOptions<A, Q>): DomainDefinition<A, Q> {
  const { name } = options;
  const knownOptions = ['name', 'aggregates', 'reactors', 'projections', 'queries'];
  const unknown = unknownOptions(options, knownOptions);
  if (unknown.length > 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Domain ${JSON.stringify(name)}: ${describeUnknownOptions(unknown, knownOptions)}.`,
      { details: { unknown } },
    );
  }
  if (typeof name !== 'string' || !isIdentifier(name)) {
    throw new DefinitionError(
      'INVALID_NAME',
      `Domain name ${JSON.stringify(name)} is not valid: use letters, digits, "_" or "-", starting with a letter (e.g. "bank").`,
    );
  }
  if (!Array.isArray(options.aggregates) || options.aggregates.length === 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Domain "${name}" has no aggregates: pass aggregates: [MyAggregate] (made with defineAggregate).`,
    );
  }
  const aggregates: Record<string, A> = {};
  for (const aggregate of options.aggregates) {
    if (aggregate?.kind !== 'aggregate') {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Domain "${name}": aggregates must be made with defineAggregate; got ${JSON.stringify(aggregate)}.`,
      );
    }
    if (Object.hasOwn(aggregates, aggregate.name)) {
      throw new DefinitionError(
        'DUPLICATE_NAME',
        `Domain "${name}" has two aggregates named "${aggregate.name}"; aggregate names must be unique in a domain.`,
      );
    }
    aggregates[aggregate.name] = aggregate;
  }
  const reactors = options.reactors ?? [];
  const reactorNames = new Set<string>();
  for (const reactor of reactors) {
    if (reactor?.kind !== 'reactor') {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Domain "${name}": reactors must be made with defineReactor.`,
      );
    }
    if (reactorNames.has(reactor.name)) {
      throw new DefinitionError(
        'DUPLICATE_NAME',
        `Domain "${name}" has two reactors named "${reactor.name}"; reactor names must be unique in a domain.`,
      );
    }
    reactorNames.add(reactor.name);
    for (const key of Object.keys(reactor.on)) {
      const [aggregateName = '', eventName = ''] = key.split('.');
      const aggregate = Object.hasOwn(aggregates, aggregateName)
        ? aggregates[aggregateName]
        : undefined;
      if (aggregate === undefined || !Object.hasOwn(aggregate.events, eventName)) {
        throw new DefinitionError(
          'UNDECLARED_EVENT',
          `Domain "${name}": reactor "${reactor.name}" handles "${key}", but the domain has no aggregate "${aggregateName}" with event "${eventName}"; add the aggregate to the domain or fix the key.`,
        );
      }
    }
  }
  const projections = options.projections ?? [];
  for (const projection of projections) {
    if (projection?.kind !== 'projection') {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Domain "${name}": projections must be made with defineProjection.`,
      );
    }
    if (reactorNames.has(projection.name)) {
      throw new DefinitionError(
        'DUPLICATE_NAME',
        `Domain "${name}" has two reactors or projections named "${projection.name}"; their names must be unique in a domain (they share the dead-letter subjects).`,
      );
    }
    reactorNames.add(projection.name);
    for (const key of Object.keys(projection.on)) {
      const [aggregateName = '', eventName = ''] = key.split('.');
      const aggregate = Object.hasOwn(aggregates, aggregateName)
        ? aggregates[aggregateName]
        : undefined;
      if (aggregate === undefined || !Object.hasOwn(aggregate.events, eventName)) {
        throw new DefinitionError(
          'UNDECLARED_EVENT',
          `Domain "${name}": projection "${projection.name}" handles "${key}", but the domain has no aggregate "${aggregateName}" with event "${eventName}"; add the aggregate to the domain or fix the key.`,
        );
      }
    }
  }
  const queries: Record<string, AnyQueryDefinition> = {};
  for (const query of options.queries ?? []) {
    if (query?.kind !== 'query') {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Domain "${name}": queries must be made with defineQuery.`,
      );
    }
    if (Object.hasOwn(queries, query.name)) {
      throw new DefinitionError(
        'DUPLICATE_NAME',
        `Domain "${name}" has two queries named "${query.name}"; query names must be unique in a domain.`,
      );
    }
    for (const projection of query.projections ?? []) {
      if (!projections.includes(projection)) {
        throw new DefinitionError(
          'INVALID_DEFINITION',
          `Domain "${name}": query "${query.name}" reads projection "${projection.name}", which is not one of the domain's projections; add it with defineDomain({ projections }).`,
        );
      }
    }
    queries[query.name] = query;
  }
  return Object.freeze({
    kind: 'domain',
    name,
    aggregates: Object.freeze(aggregates),
    reactors: Object.freeze([...reactors]),
    projections: Object.freeze([...projections]),
    queries: Object.freeze(queries) as QueriesByName<Q>,
  });
}
