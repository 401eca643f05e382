import { createActor, getNextSnapshot } from 'xstate';
import { describe, expect, it } from 'vitest';
import { reactorWorkerMachine, type WorkerEvent, type WorkerState } from '../../runtime/index.js';
import { nextWorkerState, workerStates } from '../../runtime/reactors/reactor-worker.js';

const events: WorkerEvent[] = [
  'HANDLE',
  'SUCCEED',
  'FAIL',
  'RETRY',
  'DEAD_LETTER',
  'RESUME',
  'STOP',
];

describe('reactor worker machine', () => {
  it('goes idle → handling ⇄ retrying → dead-lettered → idle', () => {
    let state: WorkerState = 'idle';
    const path: WorkerState[] = [state];
    for (const event of [
      'HANDLE',
      'FAIL',
      'RETRY',
      'FAIL',
      'RETRY',
      'DEAD_LETTER',
      'RESUME',
    ] as const) {
      state = nextWorkerState(state, event);
      path.push(state);
    }
    expect(path).toEqual([
      'idle',
      'handling',
      'retrying',
      'handling',
      'retrying',
      'handling',
      'deadLettered',
      'idle',
    ]);
  });

  it('follows the drawn machine for every state and event, and refuses what it does not have', () => {
    for (const state of workerStates) {
      for (const event of events) {
        const snapshot = reactorWorkerMachine.resolveState({ value: state, context: {} });
        if (snapshot.can({ type: event })) {
          const next = getNextSnapshot(reactorWorkerMachine, snapshot, { type: event });
          expect(nextWorkerState(state, event), `${state} + ${event}`).toBe(next.value);
        } else {
          expect(() => nextWorkerState(state, event), `${state} + ${event}`).toThrow(
            `no ${event} transition from "${state}"`,
          );
        }
      }
    }
  });

  it('runs as an XState actor, so an inspector can follow one', () => {
    const seen: unknown[] = [];
    const actor = createActor(reactorWorkerMachine, {
      inspect: (event) => {
        if (event.type === '@xstate.snapshot')
          seen.push((event.snapshot as unknown as { value: unknown }).value);
      },
    }).start();
    actor.send({ type: 'HANDLE' });
    actor.send({ type: 'DEAD_LETTER' });
    actor.send({ type: 'HANDLE' });
    actor.send({ type: 'SUCCEED' });
    expect(seen).toEqual(['idle', 'handling', 'deadLettered', 'handling', 'idle']);
    actor.stop();
  });
});
