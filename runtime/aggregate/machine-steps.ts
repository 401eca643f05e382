import {
  createActor,
  type AnyActorScope,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type Snapshot,
} from 'xstate';

/**
 * An aggregate machine's steps as pure functions of its snapshot: the initial snapshot, a
 * snapshot restored from its persisted form, and the snapshot an event leads to.
 *
 * Aggregate machines only `assign` and guard (`defineAggregate` checks it), so an XState actor
 * would add nothing to what `machine.transition` computes but its mailbox, observers, system and
 * some twenty closures: on a node with many aggregates that was a third of what an aggregate
 * kept and most of what activating one cost. Every aggregate of one machine shares one inert
 * actor scope, as XState's own `transition(…)` makes for each call: its actions do nothing and
 * its system has no actors.
 */
export class MachineSteps {
  readonly #machine: AnyStateMachine;
  readonly #scope: AnyActorScope;

  private constructor(machine: AnyStateMachine) {
    this.#machine = machine;
    const self = createActor(machine);
    this.#scope = {
      self,
      id: '',
      sessionId: '',
      system: self.system,
      logger: () => undefined,
      defer: () => undefined,
      emit: () => undefined,
      stopChild: () => undefined,
      actionExecutor: () => undefined,
    } as AnyActorScope;
  }

  static readonly #byMachine = new WeakMap<AnyStateMachine, MachineSteps>();

  /** The steps of `machine` (one instance per machine). */
  static of(machine: AnyStateMachine): MachineSteps {
    let steps = MachineSteps.#byMachine.get(machine);
    if (steps === undefined) {
      steps = new MachineSteps(machine);
      MachineSteps.#byMachine.set(machine, steps);
    }
    return steps;
  }

  /** The snapshot before any event (the initial state, its `assign` entry actions applied). */
  initial(): AnyMachineSnapshot {
    return this.#machine.getInitialSnapshot(this.#scope) as AnyMachineSnapshot;
  }

  /** A snapshot from its persisted form; throws when the machine cannot read it. */
  restore(persisted: Snapshot<unknown>): AnyMachineSnapshot {
    return this.#machine.restoreSnapshot(persisted, this.#scope) as AnyMachineSnapshot;
  }

  /** The snapshot `event` leads to from `snapshot`; throws what an action threw. */
  transition(snapshot: AnyMachineSnapshot, event: { type: string }): AnyMachineSnapshot {
    // As XState's `getNextSnapshot` does: `self.getSnapshot()` in an action is this snapshot.
    (this.#scope.self as unknown as { _snapshot: unknown })._snapshot = snapshot;
    return this.#machine.transition(snapshot, event, this.#scope) as AnyMachineSnapshot;
  }
}
