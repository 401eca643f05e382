import { createActor, type AnyMachineSnapshot } from 'xstate';
import { systemClock } from '../clock.js';
import type { AnyAggregateDefinition, AnyCommandDefinition } from '../domain/define-aggregate.js';
import type { DomainDefinition } from '../domain/define-domain.js';

/** A command to show in banners and help, with its input as JSON text. */
export interface ExampleCommand {
  /** Domain name. */
  domain: string;
  /** Aggregate name. */
  aggregate: string;
  /** Command name. */
  command: string;
  /** Input as JSON text, e.g. `{"owner":"demo"}`; `{…}` when no working input was found. */
  input: string;
}

/**
 * A command of the hosted domains that works as printed on a new aggregate: the first whose
 * decider, run on the machine's initial state with `{}` or a sample input made from its schema,
 * returns events the machine accepts. Deciders are pure, so trying them is safe. Falls back to
 * the first command with a placeholder input.
 */
export function exampleCommand(domains: readonly DomainDefinition[]): ExampleCommand {
  let fallback: ExampleCommand | undefined;
  for (const domain of domains) {
    for (const aggregate of Object.values(domain.aggregates)) {
      for (const [command, definition] of Object.entries(aggregate.commands)) {
        const base = { domain: domain.name, aggregate: aggregate.name, command };
        fallback ??= { ...base, input: '{…}' };
        for (const input of [{}, sampleInput(definition.input)]) {
          if (input !== undefined && worksOnNew(aggregate, command, definition, input)) {
            return { ...base, input: JSON.stringify(input) };
          }
        }
      }
    }
  }
  return fallback ?? { domain: 'bank', aggregate: 'Account', command: 'open', input: '{…}' };
}

function worksOnNew(
  aggregate: AnyAggregateDefinition,
  name: string,
  command: AnyCommandDefinition,
  input: unknown,
): boolean {
  const parsed = command.input.safeParse(input);
  if (!parsed.success) return false;
  const actor = createActor(aggregate.machine);
  try {
    actor.start();
    const state = actor.getSnapshot() as AnyMachineSnapshot;
    const id = 'example';
    const result: unknown = command.decide(state, parsed.data, {
      aggregateId: 'demo-1',
      version: 0,
      command: { id, name, correlationId: id, causationId: id },
      clock: systemClock,
    });
    const events = Array.isArray(result)
      ? (result as unknown[])
      : typeof result === 'object' && result !== null && 'events' in result
        ? (result as { events: unknown[] }).events
        : [result];
    const [first] = events as { type?: unknown }[];
    return typeof first?.type === 'string' && state.can(first);
  } catch {
    return false;
  } finally {
    actor.stop();
  }
}

/** `{ owner: 'demo', amount: 1 }` for an object schema of strings, numbers, booleans, enums. */
function sampleInput(schema: unknown): Record<string, unknown> | undefined {
  const def = (schema as { _zod?: { def?: { type?: string; shape?: Record<string, unknown> } } })
    ._zod?.def;
  if (def?.type !== 'object' || def.shape === undefined) return undefined;
  const sample: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(def.shape)) {
    const fieldDef = (field as { _zod?: { def?: { type?: string; entries?: object } } })._zod?.def;
    switch (fieldDef?.type) {
      case 'optional':
      case 'default':
        break;
      case 'string':
        sample[key] = 'demo';
        break;
      case 'number':
        sample[key] = 1;
        break;
      case 'boolean':
        sample[key] = true;
        break;
      case 'enum':
        sample[key] = Object.values(fieldDef.entries ?? {})[0];
        break;
      default:
        return undefined;
    }
  }
  return sample;
}
