import { setup } from 'xstate';

/**
 * The life of one reactor worker: the lane that handles the events of one aggregate for one
 * reactor, one at a time, as a state machine that can be drawn and inspected.
 *
 * - `idle`: nothing running; the next event of the aggregate may start.
 * - `handling`: the handler runs for an event (also when a dead letter is replayed).
 * - `retrying`: the handler failed; the lane waits for its backoff, and later events of the
 *   aggregate wait behind it.
 * - `deadLettered`: the event was given up on and written to the dead letters. With the `'skip'`
 *   policy the lane resumes at once; with `'wait'` it stays here until the dead letter is replayed
 *   or discarded.
 *
 * Lanes come and go with the aggregates that have events in flight, so the runtime does not keep
 * one XState actor per lane; {@link nextWorkerState} follows this machine's transitions instead
 * (as aggregate actors follow `aggregateLifecycleMachine`), so the drawing and the behaviour
 * cannot drift apart.
 */
export const reactorWorkerMachine = setup({
  types: {
    events: {} as
      | { type: 'HANDLE' }
      | { type: 'SUCCEED' }
      | { type: 'FAIL' }
      | { type: 'RETRY' }
      | { type: 'DEAD_LETTER' }
      | { type: 'RESUME' }
      | { type: 'STOP' },
  },
}).createMachine({
  id: 'reactorWorker',
  initial: 'idle',
  states: {
    idle: { on: { HANDLE: 'handling', DEAD_LETTER: 'deadLettered' } },
    handling: {
      on: { SUCCEED: 'idle', FAIL: 'retrying', DEAD_LETTER: 'deadLettered', STOP: 'idle' },
    },
    retrying: { on: { RETRY: 'handling', STOP: 'idle' } },
    deadLettered: { on: { RESUME: 'idle', HANDLE: 'handling' } },
  },
});

/** A state of {@link reactorWorkerMachine}. */
export type WorkerState = 'idle' | 'handling' | 'retrying' | 'deadLettered';

/** An event of {@link reactorWorkerMachine}. */
export type WorkerEvent =
  'HANDLE' | 'SUCCEED' | 'FAIL' | 'RETRY' | 'DEAD_LETTER' | 'RESUME' | 'STOP';

/** Every state of {@link reactorWorkerMachine}, in drawing order. */
export const workerStates: readonly WorkerState[] = Object.freeze([
  'idle',
  'handling',
  'retrying',
  'deadLettered',
]);

const table = new Map<string, WorkerState>();
for (const [state, node] of Object.entries(reactorWorkerMachine.root.states)) {
  for (const [event, transitions] of node.transitions) {
    const target = transitions[0]?.target?.[0]?.key;
    if (target !== undefined) table.set(`${state}:${event}`, target as WorkerState);
  }
}

/** The state the worker machine goes to; throws on a transition the machine does not have. */
export function nextWorkerState(state: WorkerState, event: WorkerEvent): WorkerState {
  const next = table.get(`${state}:${event}`);
  if (next === undefined) {
    throw new Error(`Reactor worker has no ${event} transition from "${state}".`);
  }
  return next;
}
