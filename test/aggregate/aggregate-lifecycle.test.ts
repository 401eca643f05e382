import { getNextSnapshot } from 'xstate';
import { describe, expect, it } from 'vitest';
import {
  aggregateLifecycleMachine,
  type LifecycleEvent,
  type LifecycleState,
} from '../../runtime/index.js';
import { nextLifecycleState } from '../../runtime/aggregate/aggregate-lifecycle.js';

const states: LifecycleState[] = [
  'spawning',
  'replaying',
  'ready',
  'committing',
  'passivated',
  'failed',
];
const events: LifecycleEvent[] = [
  'REPLAY',
  'REPLAYED',
  'COMMIT',
  'COMMITTED',
  'CONFLICT',
  'FAIL',
  'PASSIVATE',
];

describe('aggregate actor lifecycle', () => {
  it('goes spawning → replaying → ready ⇄ committing, and back to replaying on a conflict', () => {
    let state: LifecycleState = 'spawning';
    const path: LifecycleState[] = [state];
    for (const event of [
      'REPLAY',
      'REPLAYED',
      'COMMIT',
      'CONFLICT',
      'REPLAYED',
      'COMMIT',
    ] as const) {
      state = nextLifecycleState(state, event);
      path.push(state);
    }
    state = nextLifecycleState(state, 'COMMITTED');
    path.push(nextLifecycleState(state, 'PASSIVATE'));
    expect(path).toEqual([
      'spawning',
      'replaying',
      'ready',
      'committing',
      'replaying',
      'ready',
      'committing',
      'passivated',
    ]);
  });

  it('follows the drawn machine for every state and event, and refuses what it does not have', () => {
    for (const state of states) {
      for (const event of events) {
        const snapshot = aggregateLifecycleMachine.resolveState({ value: state, context: {} });
        if (snapshot.can({ type: event })) {
          const next = getNextSnapshot(aggregateLifecycleMachine, snapshot, { type: event });
          expect(nextLifecycleState(state, event), `${state} + ${event}`).toBe(next.value);
        } else {
          expect(() => nextLifecycleState(state, event), `${state} + ${event}`).toThrow(
            `no ${event} transition from "${state}"`,
          );
        }
      }
    }
  });

  it('can fail from every state that is not final', () => {
    for (const state of ['spawning', 'replaying', 'ready', 'committing'] as const) {
      expect(nextLifecycleState(state, 'FAIL')).toBe('failed');
    }
  });
});
