import { z } from 'zod';
import type { AnyStateMachine } from 'xstate';
import type { DomainDefinition } from '../domain/define-domain.js';
import { toMachineGraph, type MachineGraph } from '../visualiser/machine-graph.js';
import { runtimeMachines, type RuntimeMachine } from '../visualiser/runtime-machines.js';
import { toDot } from '../visualiser/to-dot.js';

/** A command of an aggregate, as the inspector page offers it. */
export interface CatalogueCommand {
  /** Command name. */
  name: string;
  /** JSON Schema of its input (zod's `toJSONSchema`, input side); null when zod cannot express it. */
  inputSchema: unknown;
  /** A JSON input to start from: the schema's required fields with placeholder values. */
  example: string;
}

/** A diagram the page draws: an aggregate's machine or one of the runtime's. */
export interface CatalogueMachine {
  /** `<domain>.<Aggregate>`, or `runtime.<Name>` for the runtime's machines. */
  key: string;
  /** Aggregate or machine name. */
  name: string;
  /** The machine as a graph (what `jetactor viz --format json` prints). */
  graph: MachineGraph;
  /** The graph in Graphviz DOT (`toDot`), which the page lays out with Graphviz in WebAssembly. */
  dot: string;
}

/** An aggregate type of a hosted domain. */
export interface CatalogueAggregate extends CatalogueMachine {
  /** Its commands. */
  commands: CatalogueCommand[];
  /** Its event types. */
  events: string[];
}

/** A hosted domain. */
export interface CatalogueDomain {
  /** Domain name. */
  name: string;
  /** Its aggregate types, in definition order. */
  aggregates: CatalogueAggregate[];
  /** Names of its reactors. */
  reactors: string[];
}

/** A runtime machine: its diagram, and what its counts are. */
export interface CatalogueRuntimeMachine extends CatalogueMachine {
  /** What the machine is the lifecycle of. */
  description: string;
}

/** Everything the inspector page draws, fetched once (`GET /api/catalogue`). */
export interface InspectorCatalogue {
  /** Shown in the page's header: what this node is and where its events live. */
  title: string;
  /** True when the page may send commands (`--inspect-commands`). */
  commands: boolean;
  /** The hosted domains. */
  domains: CatalogueDomain[];
  /** The runtime's lifecycle machines: aggregate actors (counted by lifecycle) and reactor workers. */
  runtime: CatalogueRuntimeMachine[];
}

/** The runtime machines the inspector counts: aggregate actors and reactor workers. */
export function inspectedRuntimeMachines(): readonly RuntimeMachine[] {
  return runtimeMachines;
}

/** Describes the hosted domains and the runtime's machines for the inspector page. */
export function buildCatalogue(
  domains: readonly DomainDefinition[],
  options: { title: string; commands: boolean },
): InspectorCatalogue {
  const draw = (key: string, name: string, machine: AnyStateMachine): CatalogueMachine => {
    const graph = toMachineGraph(machine, { name });
    return { key, name, graph, dot: toDot(graph, { direction: 'LR' }) };
  };
  return {
    title: options.title,
    commands: options.commands,
    domains: domains.map((domain) => ({
      name: domain.name,
      aggregates: Object.values(domain.aggregates).map((aggregate) => ({
        ...draw(`${domain.name}.${aggregate.name}`, aggregate.name, aggregate.machine),
        commands: Object.entries(aggregate.commands).map(([name, command]) => {
          const inputSchema = jsonSchemaOf(command.input);
          return { name, inputSchema, example: JSON.stringify(exampleOf(inputSchema)) };
        }),
        events: Object.keys(aggregate.events),
      })),
      reactors: domain.reactors.map((reactor) => reactor.name),
    })),
    runtime: inspectedRuntimeMachines().map((entry) => ({
      ...draw(`runtime.${entry.name}`, entry.name, entry.machine),
      description: entry.description,
    })),
  };
}

function jsonSchemaOf(schema: unknown): unknown {
  try {
    return z.toJSONSchema(schema as z.ZodType, { io: 'input', unrepresentable: 'any' });
  } catch {
    return null;
  }
}

/**
 * A value of a JSON Schema with placeholders for what it requires: objects get their required
 * properties, strings `""`, numbers their minimum (else 1), booleans `false`, enums their first.
 */
export function exampleOf(schema: unknown): unknown {
  if (typeof schema !== 'object' || schema === null) return {};
  const s = schema as {
    type?: unknown;
    properties?: Record<string, unknown>;
    required?: unknown;
    enum?: unknown[];
    const?: unknown;
    default?: unknown;
    minimum?: unknown;
    exclusiveMinimum?: unknown;
    minLength?: unknown;
  };
  if (s.default !== undefined) return s.default;
  if (s.const !== undefined) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  switch (s.type) {
    case 'object': {
      const required = Array.isArray(s.required) ? (s.required as unknown[]) : [];
      const example: Record<string, unknown> = {};
      for (const key of required) {
        if (typeof key === 'string') example[key] = exampleOf(s.properties?.[key]);
      }
      return example;
    }
    case 'string':
      return typeof s.minLength === 'number' && s.minLength > 0 ? 'text' : '';
    case 'integer':
    case 'number':
      if (typeof s.minimum === 'number') return s.minimum;
      if (typeof s.exclusiveMinimum === 'number') return s.exclusiveMinimum + 1;
      return 1;
    case 'boolean':
      return false;
    case 'array':
      return [];
    default:
      return null;
  }
}
