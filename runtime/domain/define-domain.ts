import { DefinitionError } from '../errors.js';
import { isIdentifier } from '../names.js';
import type { AnyAggregateDefinition } from './define-aggregate.js';
import type { ReactorDefinition } from './define-reactor.js';

/** A domain: aggregates and what reacts to them, with its own stream, subjects and buckets. */
export interface DomainDefinition<A extends AnyAggregateDefinition = AnyAggregateDefinition> {
  readonly kind: 'domain';
  /** Domain name: a subject token and the stream's name. */
  readonly name: string;
  /** Aggregate name → definition. */
  readonly aggregates: Readonly<Record<string, A>>;
  /** Reactors hosted with the domain. */
  readonly reactors: readonly ReactorDefinition[];
}

/** Options of {@link defineDomain}. */
export interface DomainOptions<A extends AnyAggregateDefinition> {
  /** Letters, digits, `_` or `-`, starting with a letter (e.g. `bank`). */
  name: string;
  /** The aggregates of the domain. */
  aggregates: readonly A[];
  /** Reactors run by nodes hosting the domain. */
  reactors?: readonly ReactorDefinition<any>[];
}

/**
 * Groups aggregates and reactors under one name. Checks names, duplicates, and that every event
 * a reactor handles belongs to an aggregate of this domain.
 */
export function defineDomain<const A extends AnyAggregateDefinition>(
  options: DomainOptions<A>,
): DomainDefinition<A> {
  const { name } = options;
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
  return Object.freeze({
    kind: 'domain',
    name,
    aggregates: Object.freeze(aggregates),
    reactors: Object.freeze([...reactors]),
  });
}
