import type { AnyStateMachine } from 'xstate';
import { aggregateLifecycleMachine } from '../aggregate/aggregate-lifecycle.js';
import { reactorWorkerMachine } from '../reactors/reactor-worker.js';

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
 * The runtime's own lifecycle machines, in the order they are drawn. A new one is one more entry
 * here; the CLI, its help and the inspector pick it up.
 */
export const runtimeMachines: readonly RuntimeMachine[] = Object.freeze([
  Object.freeze({
    name: 'AggregateActor',
    description: 'lifecycle of every aggregate actor: spawn, replay, commit, passivate, fail',
    machine: aggregateLifecycleMachine,
  }),
  Object.freeze({
    name: 'ReactorWorker',
    description:
      'one lane per aggregate with events in hand, per reactor: handle, retry, dead-letter',
    machine: reactorWorkerMachine,
  }),
]);
