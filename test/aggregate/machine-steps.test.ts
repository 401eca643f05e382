import { describe, expect, it } from 'vitest';
import {
  and,
  assign,
  createMachine,
  not,
  stateIn,
  initialTransition,
  setup,
  transition,
  type AnyMachineSnapshot,
  type AnyStateMachine,
} from 'xstate';
import { MachineSteps, hasSnapshotKeys } from '../../runtime/aggregate/machine-steps.js';
import { Account } from '../../domains/bank/index.js';
import { Aircraft } from '../../domains/flight/index.js';

interface Ev {
  type: string;
  n?: number;
  data?: Record<string, unknown>;
}

/** What a snapshot shows to the runtime and to users, compared between the two paths. */
function view(machine: AnyStateMachine, snapshot: AnyMachineSnapshot, alphabet: readonly Ev[]) {
  return {
    value: snapshot.value,
    context: snapshot.context as unknown,
    status: snapshot.status,
    output: snapshot.output as unknown,
    tags: [...snapshot.tags].sort(),
    children: Object.keys(snapshot.children),
    historyValue: snapshot.historyValue,
    persisted: machine.getPersistedSnapshot(snapshot),
    json: JSON.stringify(snapshot),
    can: alphabet.map((event) => snapshot.can(event)),
  };
}

/** A small seeded generator, so a failing sequence can be run again. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * Steps `machine` through `count` random events of `alphabet` two ways, through
 * {@link MachineSteps} and through XState's own pure `transition`, and checks after every event
 * that both snapshots read the same and that `accepts` answers as `can` does. Events a snapshot
 * does not accept are skipped, as the aggregate actor refuses them. Returns how many steps were
 * planned (the step's snapshot shares its tags with the one before, which XState never does).
 */
function compare(
  machine: AnyStateMachine,
  alphabet: readonly Ev[],
  count: number,
  seed: number,
): number {
  const steps = MachineSteps.of(machine);
  const next = random(seed);
  let ours = steps.initial();
  let [theirs] = initialTransition(machine);
  expect(view(machine, ours, alphabet)).toEqual(view(machine, theirs, alphabet));
  let planned = 0;
  for (let i = 0; i < count && theirs.status === 'active'; i++) {
    const event = alphabet[Math.floor(next() * alphabet.length)]!;
    const accepted = theirs.can(event);
    expect(steps.accepts(ours, event), `accepts ${event.type} at step ${i}`).toBe(accepted);
    if (!accepted) continue;
    const before = ours;
    ours = steps.transition(ours, event);
    [theirs] = transition(machine, theirs, event);
    if (ours.tags === before.tags) planned++;
    expect(view(machine, ours, alphabet), `after ${event.type} at step ${i}`).toEqual(
      view(machine, theirs, alphabet),
    );
  }
  return planned;
}

const nested = setup({
  types: { context: {} as { count: number; log: string[] }, events: {} as Ev },
  actions: {
    add: assign(({ context }, params: { by: number }) => ({ count: context.count + params.by })),
    note: assign(({ context, event }) => ({ log: [...context.log, event.type] })),
  },
  guards: { small: ({ context }) => context.count < 5 },
}).createMachine({
  id: 'nested',
  initial: 'on',
  context: { count: 0, log: [] },
  on: { Reset: { actions: assign({ count: 0, log: () => [] }) } },
  states: {
    on: {
      initial: 'low',
      tags: ['powered'],
      on: {
        Inc: { actions: [{ type: 'add', params: { by: 1 } }, 'note'] },
        Add: { actions: { type: 'add', params: ({ event }) => ({ by: event.n ?? 0 }) } },
        Off: { target: 'off' },
      },
      states: {
        low: {
          tags: ['low'],
          on: {
            Inc: { guard: 'small', actions: [{ type: 'add', params: { by: 2 } }, 'note'] },
            Up: { target: 'high' },
          },
        },
        high: {
          on: {
            Down: { target: 'low' },
            Twice: {
              actions: [
                assign({ count: ({ context }) => context.count * 2 }),
                assign(({ context }) => ({ log: [...context.log, `x${context.count}`] })),
              ],
            },
            Idle: {},
          },
        },
      },
    },
    off: { on: { On: { target: 'on.high' }, End: { target: 'done' } } },
    done: { type: 'final' },
  },
});
const nestedAlphabet: Ev[] = [
  { type: 'Inc' },
  { type: 'Add', n: 3 },
  { type: 'Up' },
  { type: 'Down' },
  { type: 'Twice' },
  { type: 'Idle' },
  { type: 'Off' },
  { type: 'On' },
  { type: 'Reset' },
  { type: 'End' },
  { type: 'Unknown' },
];

describe('MachineSteps', () => {
  it('steps the bank account as XState does, planning its deposits and withdrawals', () => {
    const alphabet: Ev[] = [
      { type: 'Opened', data: { owner: 'ada', overdraftLimit: 10 } },
      { type: 'Deposited', data: { amount: 5 } },
      { type: 'Withdrawn', data: { amount: 3 } },
      { type: 'Frozen', data: { reason: 'audit' } },
      { type: 'Unfrozen', data: {} },
      { type: 'Closed', data: {} },
    ];
    let planned = 0;
    for (let seed = 1; seed <= 20; seed++) {
      planned += compare(Account.machine as AnyStateMachine, alphabet, 60, seed);
    }
    expect(planned).toBeGreaterThan(50);
  });

  it('copies a snapshot in a planned step with every property XState gives it, in its order', () => {
    const steps = MachineSteps.of(Account.machine as AnyStateMachine);
    const opened = steps.transition(steps.initial(), {
      type: 'Opened',
      data: { owner: 'ada', overdraftLimit: 0 },
    } as Ev);
    // XState's own snapshots have the properties the step writes out (else it spreads them).
    expect(hasSnapshotKeys(opened)).toBe(true);
    expect(hasSnapshotKeys({ ...opened, extra: 1 } as unknown as AnyMachineSnapshot)).toBe(false);
    const deposited = steps.transition(opened, { type: 'Deposited', data: { amount: 5 } } as Ev);
    expect(Object.keys(deposited)).toEqual(Object.keys(opened));
    for (const key of Object.keys(opened) as (keyof AnyMachineSnapshot)[]) {
      if (key !== 'context') expect(deposited[key]).toBe(opened[key]);
    }
    expect(deposited.context).toEqual({ owner: 'ada', balance: 5, overdraftLimit: 0 });
    expect(deposited.matches('open')).toBe(true);
  });

  it('steps the flight domain (targets only, so nothing is planned) as XState does', () => {
    const alphabet: Ev[] = [
      { type: 'TakenOff', data: {} },
      { type: 'Landed', data: { airport: 'CDG' } },
    ];
    expect(compare(Aircraft.machine as AnyStateMachine, alphabet, 40, 7)).toBe(0);
  });

  it('follows XState through nested states, parent transitions, guards, params and several assigns', () => {
    let planned = 0;
    for (let seed = 1; seed <= 40; seed++) planned += compare(nested, nestedAlphabet, 80, seed);
    expect(planned).toBeGreaterThan(200);
  });

  it('takes the transition a passing guard chooses and the parent’s when the guard fails', () => {
    const steps = MachineSteps.of(nested);
    let snapshot = steps.initial();
    for (let i = 0; i < 4; i++) snapshot = steps.transition(snapshot, { type: 'Inc' });
    // In "low", the guarded Inc (+2) passes while the count is below 5, then the parent's (+1).
    expect(snapshot.context).toMatchObject({ count: 7 });
    expect(snapshot.value).toEqual({ on: 'low' });
  });

  it('chooses among guarded transitions as XState does: inline, named, with params', () => {
    const guarded = setup({
      types: { context: {} as { n: number; trail: string }, events: {} as Ev },
      guards: {
        below: ({ context }, params: { limit: number }) => context.n < params.limit,
        even: ({ context }) => context.n % 2 === 0,
      },
    }).createMachine({
      initial: 'counting',
      context: { n: 0, trail: '' },
      states: {
        counting: {
          on: {
            Step: [
              {
                guard: { type: 'below', params: ({ event }) => ({ limit: event.n ?? 0 }) },
                actions: assign(({ context }) => ({
                  n: context.n + 3,
                  trail: `${context.trail}a`,
                })),
              },
              {
                guard: 'even',
                actions: assign(({ context }) => ({
                  n: context.n + 1,
                  trail: `${context.trail}b`,
                })),
              },
              {
                guard: ({ event }) => (event.n ?? 0) > 20,
                target: 'stopped',
              },
              { guard: { type: 'below', params: { limit: 100 } } },
            ],
            Fix: { guard: ({ context }) => context.n > 10, target: 'stopped' },
          },
        },
        stopped: { on: { Go: { target: 'counting' } } },
      },
    });
    const alphabet: Ev[] = [
      { type: 'Step', n: 5 },
      { type: 'Step', n: 30 },
      { type: 'Step', n: 12 },
      { type: 'Fix' },
      { type: 'Go' },
    ];
    let planned = 0;
    for (let seed = 1; seed <= 30; seed++) planned += compare(guarded, alphabet, 60, seed);
    expect(planned).toBeGreaterThan(100);
  });

  it('leaves built-in guards (and, not, stateIn) to XState, with the same results', () => {
    const builtIn = setup({
      types: { context: {} as { n: number }, events: {} as Ev },
      guards: { small: ({ context }) => context.n < 4 },
    }).createMachine({
      type: 'parallel',
      context: { n: 0 },
      states: {
        a: {
          initial: 'x',
          states: {
            x: {
              on: {
                Inc: {
                  guard: and(['small', not(stateIn({ b: 'off' }))]),
                  actions: assign({ n: ({ context }) => context.n + 1 }),
                },
              },
            },
          },
        },
        b: {
          initial: 'on',
          states: { on: { on: { Toggle: 'off' } }, off: { on: { Toggle: 'on' } } },
        },
      },
    });
    const flat = createMachine({
      types: {} as { context: { n: number }; events: Ev },
      context: { n: 0 },
      on: {
        Inc: {
          guard: not(({ context }) => context.n > 3),
          actions: assign({ n: ({ context }) => context.n + 1 }),
        },
      },
    });
    const alphabet: Ev[] = [{ type: 'Inc' }, { type: 'Toggle' }];
    expect(compare(builtIn, alphabet, 40, 5)).toBe(0);
    expect(compare(flat, alphabet, 40, 5)).toBe(0);
  });

  it('throws what a guard throws, as XState words it', () => {
    const machine = createMachine({
      types: {} as { context: { n: number }; events: Ev },
      context: { n: 0 },
      on: {
        Check: {
          guard: () => {
            throw new Error('guard broke');
          },
          actions: assign({ n: 1 }),
        },
      },
    });
    const steps = MachineSteps.of(machine);
    const initial = steps.initial();
    const [reference] = initialTransition(machine);
    const thrown = (f: () => unknown): string => {
      try {
        f();
      } catch (error) {
        return (error as Error).message;
      }
      return 'nothing thrown';
    };
    const expected = thrown(() => reference.can({ type: 'Check' }));
    expect(expected).toContain('guard broke');
    expect(thrown(() => steps.accepts(initial, { type: 'Check' }))).toBe(expected);
    expect(thrown(() => steps.transition(initial, { type: 'Check' }))).toBe(
      thrown(() => transition(machine, reference, { type: 'Check' })),
    );
  });

  it('leaves wildcard, eventless and parallel machines to XState, with the same results', () => {
    const wildcard = createMachine({
      types: {} as { context: { seen: number }; events: Ev },
      context: { seen: 0 },
      initial: 'a',
      states: {
        a: {
          on: {
            Step: { actions: assign({ seen: ({ context }) => context.seen + 1 }) },
            '*': { actions: assign({ seen: ({ context }) => context.seen + 100 }) },
          },
        },
      },
    });
    const eventless = createMachine({
      types: {} as { context: { n: number }; events: Ev },
      context: { n: 0 },
      initial: 'counting',
      states: {
        counting: {
          always: { guard: ({ context }) => context.n >= 3, target: 'full' },
          on: { Step: { actions: assign({ n: ({ context }) => context.n + 1 }) } },
        },
        full: { type: 'final' },
      },
    });
    const parallel = createMachine({
      types: {} as { context: { a: number; b: number }; events: Ev },
      context: { a: 0, b: 0 },
      type: 'parallel',
      states: {
        left: { on: { Step: { actions: assign({ a: ({ context }) => context.a + 1 }) } } },
        right: { on: { Step: { actions: assign({ b: ({ context }) => context.b + 2 }) } } },
      },
    });
    const alphabet: Ev[] = [{ type: 'Step' }, { type: 'Other' }];
    expect(compare(wildcard, alphabet, 20, 3)).toBe(0);
    expect(compare(eventless, alphabet, 20, 3)).toBe(0);
    expect(compare(parallel, alphabet, 20, 3)).toBe(0);
  });

  it('answers a targetless transition without actions as not accepted, as `can` does', () => {
    const machine = createMachine({
      types: {} as { context: { n: number }; events: Ev },
      context: { n: 0 },
      on: { Nothing: {} },
    });
    const steps = MachineSteps.of(machine);
    const snapshot = steps.initial();
    expect(snapshot.can({ type: 'Nothing' })).toBe(false);
    expect(steps.accepts(snapshot, { type: 'Nothing' })).toBe(false);
  });

  it('gives an assignment that spawns to XState, which records the child', () => {
    const child = createMachine({});
    const machine = createMachine({
      types: {} as { context: { ref: unknown }; events: Ev },
      context: { ref: null },
      on: { Spawn: { actions: assign({ ref: ({ spawn }) => spawn(child) }) } },
    });
    const steps = MachineSteps.of(machine);
    const after = steps.transition(steps.initial(), { type: 'Spawn' });
    expect(Object.keys(after.children)).toHaveLength(1);
  });

  it('throws what an assignment throws, as XState does', () => {
    const machine = createMachine({
      types: {} as { context: { n: number }; events: Ev },
      context: { n: 0 },
      on: {
        Boom: {
          actions: assign(() => {
            throw new Error('boom');
          }),
        },
      },
    });
    const steps = MachineSteps.of(machine);
    expect(() => steps.transition(steps.initial(), { type: 'Boom' })).toThrow('boom');
    expect(() => transition(machine, initialTransition(machine)[0], { type: 'Boom' })).toThrow(
      'boom',
    );
  });

  it('merges an assignment with an own __proto__ key as XState does (the prototype, not a key)', () => {
    const machine = createMachine({
      types: {} as { context: Record<string, unknown>; events: Ev },
      context: { a: 1 },
      on: { Set: { actions: assign(({ event }) => event.data ?? {}) } },
    });
    // As JSON.parse reads it: an own property named __proto__.
    const data = JSON.parse('{"__proto__": {"inherited": true}, "b": 2}') as Record<
      string,
      unknown
    >;
    const event = { type: 'Set', data };
    const steps = MachineSteps.of(machine);
    const ours = steps.transition(steps.initial(), event).context as Record<string, unknown>;
    const theirs = transition(machine, initialTransition(machine)[0], event)[0].context;
    expect(Object.getPrototypeOf(ours)).toBe(Object.getPrototypeOf(theirs));
    expect(Object.keys(ours)).toEqual(Object.keys(theirs));
    expect(ours.inherited).toBe(true);
    // And the usual merge: a plain object with both sides' keys, the assignment's last.
    const set = { type: 'Set', data: { a: 3, b: 4 } };
    const plain = steps.transition(steps.initial(), set);
    expect(Object.getPrototypeOf(plain.context)).toBe(Object.prototype);
    expect(plain.context).toEqual({ a: 3, b: 4 });
  });

  it('computes the initial snapshot once, unless the context is a function', () => {
    const shared = MachineSteps.of(Account.machine as AnyStateMachine);
    expect(shared.initial()).toBe(shared.initial());
    const fresh = MachineSteps.of(
      createMachine({
        types: {} as { context: { items: string[] }; events: Ev },
        context: () => ({ items: [] }),
      }),
    );
    const first = fresh.initial();
    const second = fresh.initial();
    expect(first.context).toEqual(second.context);
    expect(first.context).not.toBe(second.context);
  });

  it('plans steps from a restored snapshot as from a replayed one', () => {
    const steps = MachineSteps.of(Account.machine as AnyStateMachine);
    let snapshot = steps.initial();
    snapshot = steps.transition(snapshot, {
      type: 'Opened',
      data: { owner: 'ada', overdraftLimit: 0 },
    } as Ev);
    const restored = steps.restore(Account.machine.getPersistedSnapshot(snapshot));
    const deposit = { type: 'Deposited', data: { amount: 4 } } as Ev;
    const after = steps.transition(restored, deposit);
    expect(after.tags).toBe(restored.tags);
    expect(after.context).toEqual({ owner: 'ada', balance: 4, overdraftLimit: 0 });
    expect(after.matches('open')).toBe(true);
    const [reference] = transition(Account.machine as AnyStateMachine, restored, deposit);
    expect(JSON.stringify(after)).toBe(JSON.stringify(reference));
  });
});
