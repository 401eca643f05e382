import {
  createActor,
  type AnyActorScope,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type Snapshot,
} from 'xstate';

/** What {@link MachineSteps} reads of an XState v5 state node. */
interface NodeView {
  type: string;
  parent?: NodeView;
  states: Record<string, NodeView>;
  transitions: Map<string, readonly TransitionView[]>;
  always?: readonly unknown[];
}

interface TransitionView {
  target?: unknown;
  guard?: unknown;
  actions: readonly unknown[];
}

/** One `assign` of a planned step: its assignment and the params it is called with. */
interface AssignStep {
  assignment: unknown;
  /** Undefined, the action's static params, or a function of `{ context, event }` giving them. */
  params: unknown;
}

type Assigner = (args: object, params: unknown) => unknown;

/** A guard XState would call with `({ context, event }, params)`, as a function of both. */
type GuardCheck = (context: unknown, event: { type: string }) => unknown;

/** One transition XState may choose for an event from a state, in the order it tries them. */
interface Candidate {
  /** Undefined when unguarded. */
  guard: GuardCheck | undefined;
  /** The assignments when the transition only assigns; null when XState takes the step. */
  steps: readonly AssignStep[] | null;
  /** What `can` answers when it is chosen: it has a target or actions. */
  accepted: boolean;
}

/** The transitions from one state for one event type, or null when XState decides alone. */
type Plan = readonly Candidate[] | null;

/** Thrown by the `spawn` a planned step gives an assignment: XState takes the step instead. */
const spawnRefused = Symbol('spawn refused');

function refuseSpawn(): never {
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- a sentinel, caught in transition()
  throw spawnRefused;
}

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
 *
 * Most events of an aggregate only change its context (a deposit adds to the balance): from the
 * state the aggregate is in, XState chooses a transition without a target whose actions are all
 * `assign`. The transitions XState would try are listed once per state and event type (a plan);
 * when the one chosen (its guard, a plain function, called as XState calls it) only assigns, the
 * step is taken directly: the assignments applied in order, as XState applies them, to a copy of
 * the snapshot with the new context. It gives the snapshot `machine.transition` gives (a test
 * compares the two) for a tenth of the work. Every other step (a target, a built-in guard such as
 * `and` or `stateIn`, a wildcard, a parallel state, a machine with eventless transitions, a guard
 * or an assignment that spawns or throws) goes through `machine.transition`.
 */
export class MachineSteps {
  readonly #machine: AnyStateMachine;
  readonly #scope: AnyActorScope;
  /** False when the machine has eventless (`always`) transitions: no step is planned. */
  readonly #plannable: boolean;
  /** Per atomic state node, per event type: the plan. */
  readonly #plans = new Map<NodeView, Map<string, Plan>>();
  /** The plan #plan found last, with its state node and event type. */
  #lastLeaf: NodeView | undefined;
  #lastType = '';
  #lastPlan: Plan = null;
  #initial: AnyMachineSnapshot | undefined;
  /**
   * Whether this XState's snapshots have exactly the properties {@link withContext} copies, in
   * its order: checked on the first snapshot a step copies (XState makes every snapshot with the
   * same literal), undefined before.
   */
  #literalCopy: boolean | undefined;

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
    this.#plannable = !hasEventless(machine.root);
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

  /**
   * The snapshot before any event (the initial state, its `assign` entry actions applied). It is
   * computed once when the machine's `context` is an object, which XState itself shares between
   * all its actors; a `context` function is called for every aggregate.
   */
  initial(): AnyMachineSnapshot {
    if (this.#initial !== undefined) return this.#initial;
    const snapshot = this.#machine.getInitialSnapshot(this.#scope) as AnyMachineSnapshot;
    if (typeof this.#machine.config.context !== 'function') this.#initial = snapshot;
    return snapshot;
  }

  /** A snapshot from its persisted form; throws when the machine cannot read it. */
  restore(persisted: Snapshot<unknown>): AnyMachineSnapshot {
    return this.#machine.restoreSnapshot(persisted, this.#scope) as AnyMachineSnapshot;
  }

  /**
   * True when `snapshot` is active and accepts `event`: XState's `snapshot.can(event)`, answered
   * from the plan when there is one.
   */
  accepts(snapshot: AnyMachineSnapshot, event: { type: string }): boolean {
    if (snapshot.status !== 'active') return false;
    const plan = this.#plan(snapshot, event.type);
    if (plan !== null) {
      try {
        return choose(plan, snapshot.context, event)?.accepted ?? false;
      } catch {
        // A guard threw: XState's `can` throws it as XState words it.
      }
    }
    return snapshot.can(event);
  }

  /** The snapshot `event` leads to from `snapshot`; throws what an action threw. */
  transition(snapshot: AnyMachineSnapshot, event: { type: string }): AnyMachineSnapshot {
    // As XState's `getNextSnapshot` does: `self.getSnapshot()` in an action is this snapshot.
    (this.#scope.self as unknown as { _snapshot: unknown })._snapshot = snapshot;
    const plan = snapshot.status === 'active' ? this.#plan(snapshot, event.type) : null;
    if (plan !== null && snapshot.context !== undefined && snapshot.context !== null) {
      try {
        const steps = choose(plan, snapshot.context, event)?.steps;
        if (steps !== undefined && steps !== null) return this.#take(snapshot, event, steps);
      } catch {
        // Whatever a guard or an assignment threw (or a spawn), XState's own step says what it
        // means.
      }
    }
    return this.#machine.transition(snapshot, event, this.#scope) as AnyMachineSnapshot;
  }

  /** The planned step: XState's `resolveAssign` for each assignment, then one snapshot copy. */
  #take(
    snapshot: AnyMachineSnapshot,
    event: { type: string },
    plan: readonly AssignStep[],
  ): AnyMachineSnapshot {
    const { self, system } = this.#scope;
    let context = snapshot.context as object;
    for (const { assignment, params } of plan) {
      const resolved =
        typeof params === 'function'
          ? (params as (args: object) => unknown)({ context, event })
          : params;
      const args = { context, event, spawn: refuseSpawn, self, system };
      let partial: unknown;
      if (typeof assignment === 'function') {
        partial = (assignment as Assigner)(args, resolved);
      } else {
        const properties = assignment as Record<string, unknown>;
        const update: Record<string, unknown> = {};
        for (const key of Object.keys(properties)) {
          const property = properties[key];
          update[key] =
            typeof property === 'function' ? (property as Assigner)(args, resolved) : property;
        }
        partial = update;
      }
      context = merged(context, partial);
    }
    this.#literalCopy ??= hasSnapshotKeys(snapshot);
    if (this.#literalCopy) return withContext(snapshot, context);
    return { ...snapshot, context } as AnyMachineSnapshot;
  }

  /** The plan for `type` from the snapshot's state. */
  #plan(snapshot: AnyMachineSnapshot, type: string): Plan {
    if (!this.#plannable) return null;
    const leaf = onlyAtomicNode(snapshot._nodes);
    if (leaf === undefined) return null;
    // Most events of a machine find the plan the last one found (a deposit after a deposit, and
    // each is asked for twice: accepts, then transition): two lookups fewer.
    if (leaf === this.#lastLeaf && type === this.#lastType) return this.#lastPlan;
    const plan = this.#lookUp(leaf, type);
    this.#lastLeaf = leaf;
    this.#lastType = type;
    this.#lastPlan = plan;
    return plan;
  }

  #lookUp(leaf: NodeView, type: string): Plan {
    let byType = this.#plans.get(leaf);
    if (byType === undefined) {
      byType = new Map();
      this.#plans.set(leaf, byType);
    }
    let plan = byType.get(type);
    if (plan === undefined) {
      plan = this.#compile(leaf, type);
      byType.set(type, plan);
    }
    return plan;
  }

  /**
   * The transitions XState tries for `type` from the atomic state `leaf`, in its order (the
   * state's own, then its ancestors'), up to the first unguarded one. Null when XState must
   * choose alone: a wildcard, or a guard that is not a plain function (`and`, `or`, `not`,
   * `stateIn`, one named by another name).
   */
  #compile(leaf: NodeView, type: string): Plan {
    const candidates: Candidate[] = [];
    for (let node: NodeView | undefined = leaf; node !== undefined; node = node.parent) {
      for (const descriptor of node.transitions.keys()) {
        if (descriptor === '*' || descriptor.endsWith('.*')) return null;
      }
      for (const transition of node.transitions.get(type) ?? []) {
        let guard: GuardCheck | undefined;
        if (transition.guard !== undefined) {
          guard = this.#guardCheck(transition.guard);
          if (guard === undefined) return null;
        }
        const { actions } = transition;
        candidates.push({
          guard,
          steps: transition.target === undefined ? this.#assignSteps(actions) : null,
          accepted: transition.target !== undefined || actions.length > 0,
        });
        if (guard === undefined) return candidates;
      }
    }
    return candidates;
  }

  /** The actions as assignments, or null unless there are some and all are `assign`. */
  #assignSteps(actions: readonly unknown[]): readonly AssignStep[] | null {
    if (actions.length === 0) return null;
    const steps: AssignStep[] = [];
    for (const action of actions) {
      const step = this.#assignStep(action);
      if (step === undefined) return null;
      steps.push(step);
    }
    return steps;
  }

  /** The guard as XState's `evaluateGuard` calls a plain function guard; undefined otherwise. */
  #guardCheck(guard: unknown): GuardCheck | undefined {
    const reference = resolveReference(guard, this.#machine.implementations.guards);
    if (reference === undefined) return undefined;
    const { resolved, params } = reference;
    if (typeof resolved !== 'function' || 'check' in resolved) return undefined;
    const check = resolved as (args: object, params: unknown) => unknown;
    if (typeof params === 'function') {
      const paramsOf = params as (args: object) => unknown;
      return (context, event) => check({ context, event }, paramsOf({ context, event }));
    }
    return (context, event) => check({ context, event }, params);
  }

  /** The action as an {@link AssignStep}, resolved as XState resolves it; undefined if not one. */
  #assignStep(action: unknown): AssignStep | undefined {
    const reference = resolveReference(action, this.#machine.implementations.actions);
    if (reference === undefined) return undefined;
    const { resolved, params } = reference;
    if (typeof resolved !== 'function') return undefined;
    const { type, assignment } = resolved as { type?: unknown; assignment?: unknown };
    if (type !== 'xstate.assign') return undefined;
    if (
      typeof assignment !== 'function' &&
      (typeof assignment !== 'object' || assignment === null)
    ) {
      return undefined;
    }
    return { assignment, params };
  }
}

/**
 * An action or guard as XState resolves it: inline as it is, a name (or `{ type, params }`) looked
 * up in the machine's implementations, with the params given; undefined for an object without a
 * type.
 */
function resolveReference(
  reference: unknown,
  implementations: unknown,
): { resolved: unknown; params: unknown } | undefined {
  if (typeof reference === 'function') return { resolved: reference, params: undefined };
  const byName = (implementations ?? {}) as Record<string, unknown>;
  if (typeof reference === 'string') return { resolved: byName[reference], params: undefined };
  if (typeof reference !== 'object' || reference === null) return undefined;
  const { type, params } = reference as { type?: unknown; params?: unknown };
  if (typeof type !== 'string') return undefined;
  return { resolved: byName[type], params };
}

/**
 * `Object.assign({}, context, partial)`, as XState's `assign` merges, written as a spread: about
 * a third of the time for the plain objects contexts are. The two differ only for an own
 * `__proto__` key (`Object.assign` sets the prototype, a spread copies the key), so such
 * objects are merged as XState merges them.
 */
function merged(context: object, partial: unknown): object {
  if (
    typeof partial !== 'object' ||
    partial === null ||
    Object.hasOwn(context, '__proto__') ||
    Object.hasOwn(partial, '__proto__')
  ) {
    return Object.assign({}, context, partial);
  }
  return { ...context, ...partial };
}

/** The transition XState chooses (the first whose guard passes), or undefined for none. */
function choose(plan: readonly Candidate[], context: unknown, event: { type: string }) {
  for (const candidate of plan) {
    if (candidate.guard === undefined || candidate.guard(context, event)) return candidate;
  }
  return undefined;
}

/** The properties of a machine snapshot, in the order XState's `createMachineSnapshot` gives them. */
const SNAPSHOT_KEYS = [
  'status',
  'output',
  'error',
  'machine',
  'context',
  '_nodes',
  'value',
  'tags',
  'children',
  'historyValue',
  'matches',
  'hasTag',
  'can',
  'getMeta',
  'toJSON',
];

/** True when `snapshot` has exactly the properties {@link withContext} copies, in its order. */
export function hasSnapshotKeys(snapshot: AnyMachineSnapshot): boolean {
  const keys = Object.keys(snapshot);
  return keys.length === SNAPSHOT_KEYS.length && keys.every((key, at) => key === SNAPSHOT_KEYS[at]);
}

/**
 * A copy of `snapshot` with another context: what `{ ...snapshot, context }` gives, written out
 * property by property (about 20 ns against about 470 for the spread of a snapshot, which V8
 * copies the slow way).
 */
function withContext(snapshot: AnyMachineSnapshot, context: object): AnyMachineSnapshot {
  const s = snapshot as unknown as Record<(typeof SNAPSHOT_KEYS)[number], unknown>;
  return {
    status: s.status,
    output: s.output,
    error: s.error,
    machine: s.machine,
    context,
    _nodes: s._nodes,
    value: s.value,
    tags: s.tags,
    children: s.children,
    historyValue: s.historyValue,
    matches: s.matches,
    hasTag: s.hasTag,
    can: s.can,
    getMeta: s.getMeta,
    toJSON: s.toJSON,
  } as unknown as AnyMachineSnapshot;
}

/** The one atomic (or final) state node of a configuration; undefined for parallel states. */
function onlyAtomicNode(nodes: readonly NodeView[]): NodeView | undefined {
  let leaf: NodeView | undefined;
  for (const node of nodes) {
    if (node.type !== 'atomic' && node.type !== 'final') continue;
    if (leaf !== undefined) return undefined;
    leaf = node;
  }
  return leaf;
}

function hasEventless(node: NodeView): boolean {
  if (node.always !== undefined && node.always.length > 0) return true;
  return Object.values(node.states).some(hasEventless);
}
