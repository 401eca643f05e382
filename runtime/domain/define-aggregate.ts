import type { AnyStateMachine, SnapshotFrom } from 'xstate';
import type { z } from 'zod';
import type { Clock } from '../clock.js';
import { DefinitionError } from '../errors.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';
import { isIdentifier } from '../names.js';
import { checkMachine } from './check-machine.js';
import { machineFingerprint } from './machine-fingerprint.js';
import type { EventSchemas, NewEvent } from './events.js';

/** Metadata of the command being decided. */
export interface CommandMetadata {
  /** Command id: the client's, or generated. Also the id of the commit it lands in. */
  id: string;
  /** Command name. */
  name: string;
  /** Who sent it, when known. */
  actor?: string;
  /** Correlation id (defaults to the command id). */
  correlationId: string;
  /** Causation id (defaults to the command id). */
  causationId: string;
}

/** What `decide` can see besides the state and the input. */
export interface DecideContext {
  /** Id of the aggregate instance. */
  aggregateId: string;
  /** Its version before this command: 0 when it has no events yet. */
  version: number;
  /** The command's metadata. */
  command: CommandMetadata;
  /** The injected clock; use it rather than `Date.now()` so tests control time. */
  clock: Clock;
}

/** What `decide` returns: one event, several, or events with a response for the caller. */
export type DecideResult<E extends EventSchemas, R> =
  NewEvent<E> | readonly NewEvent<E>[] | { events: readonly NewEvent<E>[]; response: R };

/** A command: its input schema and its pure decider. */
export interface CommandDefinition<S, E extends EventSchemas, I extends z.ZodType, R> {
  /** Zod schema of the input; a command whose input fails it never reaches `decide`. */
  readonly input: I;
  /**
   * Pure: looks at the state (the machine's snapshot) and the input, returns events, or throws a
   * {@link DomainError} to reject the command. No I/O, no `Date.now()`, no randomness.
   */
  decide(state: S, input: z.output<I>, ctx: DecideContext): DecideResult<E, R>;
}

/** Any command definition. */
export type AnyCommandDefinition = CommandDefinition<any, any, z.ZodType, unknown>;

/** The helper handed to `commands`, so input and response types are inferred per command. */
export type CommandHelper<S, E extends EventSchemas> = <I extends z.ZodType, R = undefined>(
  input: I,
  decide: (state: S, input: z.output<I>, ctx: DecideContext) => DecideResult<E, R>,
) => CommandDefinition<S, E, I, R>;

/** An aggregate: its events, its state machine and its commands. Plain, frozen data. */
export interface AggregateDefinition<
  N extends string = string,
  E extends EventSchemas = EventSchemas,
  M extends AnyStateMachine = AnyStateMachine,
  C extends Record<string, AnyCommandDefinition> = Record<string, AnyCommandDefinition>,
> {
  readonly kind: 'aggregate';
  /** Aggregate type name, a subject token (e.g. `Account`). */
  readonly name: N;
  /** Event name → payload schema. */
  readonly events: E;
  /** The state machine: the only way an event changes state. */
  readonly machine: M;
  /** Command name → definition. */
  readonly commands: C;
  /** Every event type the machine has a transition for. */
  readonly acceptedEvents: ReadonlySet<string>;
  /** Event name → functions upgrading its payload from version 1, 2, … to the next. */
  readonly upcasters: Readonly<Record<string, readonly Upcaster[]>>;
  /** Event name → current payload schema version (1 + its number of upcasters). */
  readonly eventVersions: Readonly<Record<string, number>>;
  /**
   * Hash of the machine's definition (states, transitions, action and guard code) and the event
   * versions. A snapshot taken under another fingerprint is not trusted.
   */
  readonly fingerprint: string;
}

/** Turns an event payload of one schema version into the payload of the next version. */
export type Upcaster = (data: any) => unknown;

/**
 * Event name → upcasters, oldest first: `[v1 → v2, v2 → v3]` makes the current version 3. Old
 * events are upcast when read, then validated against the current schema.
 */
export type Upcasters<E extends EventSchemas> = { readonly [K in keyof E]?: readonly Upcaster[] };

/** Any aggregate definition. */
export type AnyAggregateDefinition = AggregateDefinition<
  string,
  EventSchemas,
  AnyStateMachine,
  Record<string, AnyCommandDefinition>
>;

/** Input type of one command of an aggregate. */
export type CommandInput<C> =
  C extends CommandDefinition<any, any, infer I, any> ? z.input<I> : never;

/** Response type of one command of an aggregate. */
export type CommandResponse<C> = C extends CommandDefinition<any, any, any, infer R> ? R : never;

/** Options of {@link defineAggregate}. */
export interface AggregateOptions<
  N extends string,
  E extends EventSchemas,
  M extends AnyStateMachine,
  C extends Record<string, AnyCommandDefinition>,
> {
  /** Aggregate type name: letters, digits, `_` or `-`, starting with a letter. */
  name: N;
  /** Event name → zod schema of its payload. */
  events: E;
  /**
   * An XState v5 machine whose events are exactly these domain events (type them with
   * {@link DomainEvents}). Only `assign` actions and guards are allowed.
   */
  machine: M;
  /** Receives a `command(input, decide)` helper and returns command name → command. */
  commands: (command: CommandHelper<SnapshotFrom<M>, E>) => C;
  /**
   * Versioned events: event name → upcasters from older payload versions, oldest first. An event
   * with `n` upcasters is written as version `n + 1`; older stored payloads are upcast on read.
   */
  upcasters?: Upcasters<E>;
}

const command: CommandHelper<any, any> = (input, decide) => Object.freeze({ input, decide });

/**
 * Defines an aggregate. Checks the definition at once: names, schemas, and that the machine is
 * pure and accepts exactly the declared events.
 *
 * @example
 * const Aircraft = defineAggregate({
 *   name: 'Aircraft', events, machine,
 *   commands: (command) => ({
 *     takeOff: command(z.object({}), (state) => ({ type: 'TakenOff', data: {} })),
 *   }),
 * });
 */
export function defineAggregate<
  const N extends string,
  E extends EventSchemas,
  M extends AnyStateMachine,
  C extends Record<string, CommandDefinition<SnapshotFrom<M>, E, any, any>>,
>(options: AggregateOptions<N, E, M, C>): AggregateDefinition<N, E, M, C> {
  const { name, events, machine } = options;
  const knownOptions = ['name', 'events', 'machine', 'commands', 'upcasters'];
  const unknown = unknownOptions(options, knownOptions);
  if (unknown.length > 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Aggregate ${JSON.stringify(name)}: ${describeUnknownOptions(unknown, knownOptions)}.`,
      { details: { unknown } },
    );
  }
  if (typeof name !== 'string' || !isIdentifier(name)) {
    throw new DefinitionError(
      'INVALID_NAME',
      `Aggregate name ${JSON.stringify(name)} is not valid: use letters, digits, "_" or "-", starting with a letter (e.g. "Account").`,
    );
  }
  if (typeof events !== 'object' || events === null || Object.keys(events).length === 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Aggregate "${name}" declares no events: pass events: { EventName: z.object({ … }) }.`,
    );
  }
  for (const [eventName, schema] of Object.entries(events)) {
    checkName(name, 'event', eventName);
    if (!isZodSchema(schema)) {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Aggregate "${name}": event "${eventName}" has no zod schema; declare it as ${eventName}: z.object({ … }).`,
      );
    }
  }
  if (typeof machine !== 'object' || machine === null || !('root' in machine)) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Aggregate "${name}": machine is not an XState v5 machine; create it with setup({ … }).createMachine({ … }).`,
    );
  }
  const accepted = checkMachine(name, machine);
  for (const eventType of accepted) {
    if (eventType === '*' || eventType.endsWith('.*')) continue;
    if (!Object.hasOwn(events, eventType)) {
      throw new DefinitionError(
        'UNDECLARED_EVENT',
        `Aggregate "${name}": the machine has a transition on "${eventType}", which is not a declared event; ` +
          `add ${eventType}: z.object({ … }) to events or remove the transition.`,
      );
    }
  }
  const wildcard = accepted.has('*');
  for (const eventName of Object.keys(events)) {
    if (!wildcard && !accepted.has(eventName)) {
      throw new DefinitionError(
        'UNHANDLED_EVENT',
        `Aggregate "${name}": event "${eventName}" is declared but no state of the machine has a transition on it, ` +
          `so it could never be applied; add on: { ${eventName}: … } where it may happen.`,
      );
    }
  }
  if (typeof options.commands !== 'function') {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Aggregate "${name}": commands must be a function, e.g. commands: (command) => ({ open: command(schema, decide) }).`,
    );
  }
  const commands = options.commands(command as CommandHelper<SnapshotFrom<M>, E>);
  for (const [commandName, definition] of Object.entries(commands)) {
    checkName(name, 'command', commandName);
    if (!isZodSchema(definition.input) || typeof definition.decide !== 'function') {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Aggregate "${name}": command "${commandName}" must be made with command(zodSchema, decide).`,
      );
    }
  }
  const upcasters: Record<string, readonly Upcaster[]> = {};
  const eventVersions: Record<string, number> = {};
  for (const [eventName, list] of Object.entries(options.upcasters ?? {})) {
    if (!(eventName in events)) {
      throw new DefinitionError(
        'UNDECLARED_EVENT',
        `Aggregate "${name}": upcasters are given for "${eventName}", which is not a declared event; declare it in events or remove its upcasters.`,
      );
    }
    if (!Array.isArray(list) || !list.every((f) => typeof f === 'function')) {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Aggregate "${name}": upcasters.${eventName} must be an array of functions, oldest first ([v1 → v2, v2 → v3, …]).`,
      );
    }
    upcasters[eventName] = Object.freeze([...(list as Upcaster[])]);
  }
  for (const eventName of Object.keys(events)) {
    eventVersions[eventName] = (upcasters[eventName]?.length ?? 0) + 1;
  }
  return Object.freeze({
    kind: 'aggregate',
    name,
    events: Object.freeze({ ...events }),
    machine,
    commands: Object.freeze({ ...commands }),
    acceptedEvents: accepted,
    upcasters: Object.freeze(upcasters),
    eventVersions: Object.freeze(eventVersions),
    fingerprint: machineFingerprint(machine, eventVersions),
  });
}

function checkName(aggregate: string, what: string, value: string): void {
  if (!isIdentifier(value)) {
    throw new DefinitionError(
      'INVALID_NAME',
      `Aggregate "${aggregate}": ${what} name ${JSON.stringify(value)} is not valid: use letters, digits, "_" or "-", starting with a letter.`,
    );
  }
}

/** True for zod schemas (v4 classic or mini). */
export function isZodSchema(value: unknown): value is z.ZodType {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { safeParse?: unknown }).safeParse === 'function'
  );
}
