import { setup } from 'xstate';

/**
 * The lifecycle of every aggregate actor, as a state machine that can be drawn and inspected.
 *
 * The runtime does not run one XState actor per lifecycle (that would double the memory of an
 * idle aggregate); {@link nextLifecycleState} follows this machine's transitions instead, so
 * the drawing and the behaviour cannot drift apart.
 */
export const aggregateLifecycleMachine = setup({
  types: {
    events: {} as
      | { type: 'REPLAY' }
      | { type: 'REPLAYED' }
      | { type: 'COMMIT' }
      | { type: 'COMMITTED' }
      | { type: 'CONFLICT' }
      | { type: 'FAIL' }
      | { type: 'PASSIVATE' },
  },
}).createMachine({
  id: 'aggregateActor',
  initial: 'spawning',
  states: {
    spawning: { on: { REPLAY: 'replaying', FAIL: 'failed' } },
    replaying: { on: { REPLAYED: 'ready', FAIL: 'failed' } },
    ready: { on: { COMMIT: 'committing', PASSIVATE: 'passivated', FAIL: 'failed' } },
    committing: { on: { COMMITTED: 'ready', CONFLICT: 'replaying', FAIL: 'failed' } },
    passivated: { type: 'final' },
    failed: { type: 'final' },
  },
});

/** A lifecycle state. */
export type LifecycleState =
  'spawning' | 'replaying' | 'ready' | 'committing' | 'passivated' | 'failed';

/** A lifecycle event. */
export type LifecycleEvent =
  'REPLAY' | 'REPLAYED' | 'COMMIT' | 'COMMITTED' | 'CONFLICT' | 'FAIL' | 'PASSIVATE';

/** Target state by state and event: one lookup per transition, no key to build. */
const table = new Map<string, Map<string, LifecycleState>>();
for (const [state, node] of Object.entries(aggregateLifecycleMachine.root.states)) {
  const targets = new Map<string, LifecycleState>();
  for (const [event, transitions] of node.transitions) {
    const target = transitions[0]?.target?.[0]?.key;
    if (target !== undefined) targets.set(event, target as LifecycleState);
  }
  table.set(state, targets);
}

/** The state the lifecycle machine goes to; throws on a transition the machine does not have. */
export function nextLifecycleState(state: LifecycleState, event: LifecycleEvent): LifecycleState {
  const next = table.get(state)?.get(event);
  if (next === undefined) {
    throw new Error(`Aggregate actor lifecycle has no ${event} transition from "${state}".`);
  }
  return next;
}
