import type { AnyStateMachine } from 'xstate';
import { aggregateLifecycleMachine } from '../aggregate/aggregate-lifecycle.js';

/** A state machine of the runtime itself, drawn by `jetactor viz runtime`. */
export interface RuntimeMachine {
  /** Name of the diagram, of its `--aggregate` filter and of its file (`AggregateActor.svg`). */
  readonly name: string;
  /** What the machine is the lifecycle of, in a few words. */
  readonly description: string;
  /** The machine. */
  readonly machine: AnyStateMachine;
}

/**
 * The runtime's own lifecycle machines, in the order they are drawn. A new one (the reactor
 * worker's, …) is one more entry here; the CLI and its help pick it up.
 */
export const runtimeMachines: readonly RuntimeMachine[] = Object.freeze([
  Object.freeze({
    name: 'AggregateActor',
    description: 'lifecycle of every aggregate actor: spawn, replay, commit, passivate, fail',
    machine: aggregateLifecycleMachine,
  }),
]);
