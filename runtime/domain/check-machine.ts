import type { AnyStateMachine } from 'xstate';
import { DefinitionError } from '../errors.js';

/** Minimal view of an XState v5 state node, as far as the checks need it. */
interface NodeView {
  id: string;
  config: { after?: unknown; invoke?: unknown };
  states: Record<string, NodeView>;
  entry: unknown[];
  exit: unknown[];
  transitions: Map<string, TransitionView[]>;
  always?: TransitionView[];
}

interface TransitionView {
  actions: unknown[];
}

const allowedBuiltins = new Set(['xstate.assign']);

/**
 * Checks that an aggregate machine is pure: only `assign` actions and guards, no invoked or
 * spawned actors, no delayed transitions. Replay must give the same state every time.
 *
 * Returns every event type the machine accepts (internal `xstate.*` events excluded).
 */
export function checkMachine(aggregate: string, machine: AnyStateMachine): Set<string> {
  const accepted = new Set<string>();
  const implementations = (machine.implementations.actions ?? {}) as Record<string, unknown>;

  const checkAction = (action: unknown, where: string): void => {
    let resolved: unknown = action;
    let label = describeAction(action);
    if (typeof action === 'string' || (typeof action === 'object' && action !== null)) {
      const name = typeof action === 'string' ? action : (action as { type?: unknown }).type;
      if (typeof name !== 'string') {
        throw impure(aggregate, `an action object without a type ${where}`);
      }
      label = `"${name}"`;
      resolved = implementations[name];
      if (resolved === undefined) {
        throw impure(
          aggregate,
          `action ${label} ${where} has no implementation in setup({ actions })`,
        );
      }
    }
    const type = (resolved as { type?: unknown }).type;
    if (typeof resolved === 'function' && typeof type === 'string' && allowedBuiltins.has(type)) {
      return;
    }
    const kind = typeof type === 'string' ? type.replace(/^xstate\./, '') : 'a custom function';
    throw impure(aggregate, `action ${label} ${where} is ${kind}`);
  };

  const visit = (node: NodeView): void => {
    const where = `in state "${node.id}"`;
    if (node.config.invoke !== undefined) {
      throw impure(aggregate, `state "${node.id}" invokes an actor`);
    }
    if (node.config.after !== undefined) {
      throw impure(aggregate, `state "${node.id}" has a delayed transition (after)`);
    }
    for (const action of node.entry) checkAction(action, `(entry ${where})`);
    for (const action of node.exit) checkAction(action, `(exit ${where})`);
    for (const [eventType, transitions] of node.transitions) {
      if (!eventType.startsWith('xstate.')) accepted.add(eventType);
      for (const transition of transitions) {
        for (const action of transition.actions) checkAction(action, `(on ${eventType} ${where})`);
      }
    }
    for (const transition of node.always ?? []) {
      for (const action of transition.actions) checkAction(action, `(always ${where})`);
    }
    for (const child of Object.values(node.states)) visit(child);
  };

  visit(machine.root as unknown as NodeView);
  return accepted;
}

/** Names JavaScript gives an inline function from the config key it is written under. */
const keyNames = new Set(['actions', 'entry', 'exit']);

function describeAction(action: unknown): string {
  if (typeof action === 'function') {
    return action.name && !keyNames.has(action.name) ? `"${action.name}"` : 'an inline function';
  }
  return JSON.stringify(action);
}

function impure(aggregate: string, what: string): DefinitionError {
  return new DefinitionError(
    'IMPURE_MACHINE',
    `Aggregate "${aggregate}": ${what}. Aggregate machines may only use assign actions and guards, ` +
      `because replaying events must always give the same state; move side effects into a reactor.`,
  );
}
