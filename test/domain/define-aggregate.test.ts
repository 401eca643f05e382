import {
  assign,
  createMachine,
  emit,
  enqueueActions,
  fromPromise,
  log,
  raise,
  setup,
  spawnChild,
  type AnyStateMachine,
} from 'xstate';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  DefinitionError,
  createNode,
  defineAggregate,
  defineDomain,
  isDefinitionError,
  isZodSchema,
  type DomainEvents,
  type JetactorError,
} from '../../runtime/index.js';
import { Account, bank } from '../../domains/bank/index.js';
import { rejectionOf, silentLogger } from '../fixtures/test-support.js';

const events = { Started: z.object({ rpm: z.number() }), Stopped: z.object({}) };
type EngineEvents = DomainEvents<typeof events>;

const worker = fromPromise(() => Promise.resolve(1));

/** A pure machine accepting both events; the cases below each spoil one thing. */
const pure = setup({
  types: { context: {} as { rpm: number }, events: {} as EngineEvents },
  actions: {
    setRpm: assign({ rpm: ({ event }) => (event.type === 'Started' ? event.data.rpm : 0) }),
  },
  guards: { fast: ({ event }) => event.type === 'Started' && event.data.rpm > 1000 },
}).createMachine({
  initial: 'off',
  context: { rpm: 0 },
  states: {
    off: {
      on: { Started: [{ guard: 'fast', target: 'racing', actions: 'setRpm' }, { target: 'on' }] },
    },
    on: { on: { Stopped: { target: 'off', actions: assign({ rpm: 0 }) } } },
    racing: { entry: { type: 'setRpm' }, on: { Stopped: 'off' } },
  },
});

function engine(machine: AnyStateMachine, overrides: { name?: string } = {}) {
  return defineAggregate({
    name: overrides.name ?? 'Engine',
    events,
    machine,
    commands: (command) => ({
      start: command(z.object({ rpm: z.number() }), (_state, input) => ({
        type: 'Started',
        data: { rpm: input.rpm },
      })),
    }),
  });
}

function definitionErrorOf(define: () => unknown): JetactorError {
  try {
    define();
  } catch (error) {
    expect(error).toBeInstanceOf(DefinitionError);
    expect(isDefinitionError(error)).toBe(true);
    expect((error as DefinitionError).retryable).toBe(false);
    return error as DefinitionError;
  }
  return expect.unreachable('expected a DefinitionError');
}

/** Untyped machines on the two engine events, so each case can add one impure thing. */
const impure: { what: string; machine: AnyStateMachine; says: RegExp }[] = [
  {
    what: 'invokes an actor',
    machine: setup({ actors: { worker } }).createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: 'on' } },
        on: { invoke: { src: 'worker' }, on: { Stopped: 'off' } },
      },
    }),
    says: /state "\(machine\)\.on" invokes an actor/,
  },
  {
    what: 'has a delayed transition',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: 'on' } },
        on: { after: { 1000: 'off' }, on: { Stopped: 'off' } },
      },
    }),
    says: /delayed transition \(after\)/,
  },
  {
    what: 'spawns a child',
    machine: setup({ actors: { worker } }).createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: { target: 'on', actions: spawnChild('worker') } } },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /is spawnChild/,
  },
  {
    what: 'raises an event',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: { target: 'on', actions: raise({ type: 'Stopped' }) } } },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /is raise/,
  },
  {
    what: 'logs',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: 'on' }, entry: log('off') },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /\(entry in state "\(machine\)\.off"\) is log/,
  },
  {
    what: 'emits',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: 'on' } },
        on: { on: { Stopped: 'off' }, exit: emit({ type: 'engine.stopped' }) },
      },
    }),
    says: /\(exit in state "\(machine\)\.on"\) is emit/,
  },
  {
    what: 'enqueues actions',
    machine: createMachine({
      initial: 'off',
      states: {
        off: {
          on: {
            Started: { target: 'on', actions: enqueueActions(({ enqueue }) => enqueue.assign({})) },
          },
        },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /is enqueueActions/,
  },
  {
    what: 'runs an inline function',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: { target: 'on', actions: () => undefined } } },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /an inline function .* is a custom function/,
  },
  {
    what: 'runs a named function',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: { target: 'on', actions: function ringBell() {} } } },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /action "ringBell" .* is a custom function/,
  },
  {
    what: 'names an action that is not assign',
    machine: setup({ actions: { notify: () => undefined } }).createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: { target: 'on', actions: 'notify' } } },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /action "notify" \(on Started in state "\(machine\)\.off"\) is a custom function/,
  },
  {
    what: 'names an action it does not implement',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: { target: 'on', actions: { type: 'missing' } } } },
        on: { on: { Stopped: 'off' } },
      },
    }),
    says: /action "missing" .* has no implementation in setup\(\{ actions \}\)/,
  },
  {
    what: 'runs an action on an eventless transition',
    machine: createMachine({
      initial: 'off',
      states: {
        off: { on: { Started: 'on' } },
        on: {
          always: { guard: () => false, target: 'off', actions: log('x') },
          on: { Stopped: 'off' },
        },
      },
    }),
    says: /\(always in state "\(machine\)\.on"\) is log/,
  },
];

describe('defineAggregate', () => {
  it('returns plain frozen data with the events the machine accepts', () => {
    const Engine = engine(pure);

    expect(Engine.kind).toBe('aggregate');
    expect(Engine.name).toBe('Engine');
    expect(Object.keys(Engine.events)).toEqual(['Started', 'Stopped']);
    expect(Object.keys(Engine.commands)).toEqual(['start']);
    expect([...Engine.acceptedEvents].sort()).toEqual(['Started', 'Stopped']);
    expect(Object.isFrozen(Engine)).toBe(true);
    expect(Object.isFrozen(Engine.commands)).toBe(true);
    expect(isZodSchema(Engine.commands.start.input)).toBe(true);
    expect([...Account.acceptedEvents].sort()).toEqual(
      ['Closed', 'Deposited', 'Frozen', 'Opened', 'Unfrozen', 'Withdrawn'].sort(),
    );
  });

  it('accepts assign actions, named or inline, and guards', async () => {
    const Engine = engine(pure);
    const node = createNode({
      domains: [defineDomain({ name: 'garage', aggregates: [Engine] })],
      logger: silentLogger,
    });
    await node.aggregate(Engine, 'e-1').start({ rpm: 3000 });
    expect(await node.view(Engine, 'e-1')).toMatchObject({
      value: 'racing',
      context: { rpm: 3000 },
    });
    await node.stop();
  });

  describe('refuses an impure machine with IMPURE_MACHINE', () => {
    it.each(impure)('that $what', ({ machine, says }) => {
      const error = definitionErrorOf(() => engine(machine));
      expect(error.code).toBe('IMPURE_MACHINE');
      expect(error.message).toMatch(says);
      expect(error.message).toContain('Aggregate "Engine"');
      expect(error.message).toContain('move side effects into a reactor');
    });
  });

  it('refuses a transition on an event that is not declared, with UNDECLARED_EVENT', () => {
    for (const eventType of ['Exploded', 'toString']) {
      const machine = createMachine({
        on: { Started: {}, Stopped: {}, [eventType]: {} },
      });
      const error = definitionErrorOf(() => engine(machine));
      expect(error.code).toBe('UNDECLARED_EVENT');
      expect(error.message).toContain(`"${eventType}"`);
    }
  });

  it('refuses a declared event no state accepts, with UNHANDLED_EVENT', () => {
    const error = definitionErrorOf(() => engine(createMachine({ on: { Started: {} } })));
    expect(error.code).toBe('UNHANDLED_EVENT');
    expect(error.message).toContain('"Stopped"');
  });

  it('accepts a wildcard transition as handling every declared event', () => {
    expect(engine(createMachine({ on: { '*': {} } })).acceptedEvents.has('*')).toBe(true);
  });

  it.each(['', 'engine room', '1Engine', 'Engine.V8', 'Engine*', 'x'.repeat(65)])(
    'refuses the aggregate name %j with INVALID_NAME',
    (name) => {
      const error = definitionErrorOf(() => engine(pure, { name }));
      expect(error.code).toBe('INVALID_NAME');
      expect(error.message).toContain(JSON.stringify(name));
    },
  );

  it('refuses invalid event and command names with INVALID_NAME', () => {
    const badEvent = definitionErrorOf(() =>
      defineAggregate({
        name: 'Engine',
        events: { 'Started.Now': z.object({}) },
        machine: createMachine({ on: { 'Started.Now': {} } }),
        commands: () => ({}),
      }),
    );
    expect(badEvent.code).toBe('INVALID_NAME');
    expect(badEvent.message).toContain('event name "Started.Now"');

    const badCommand = definitionErrorOf(() =>
      defineAggregate({
        name: 'Engine',
        events,
        machine: pure,
        commands: (command) => ({ 'start up': command(z.object({}), () => []) }),
      }),
    );
    expect(badCommand.code).toBe('INVALID_NAME');
    expect(badCommand.message).toContain('command name "start up"');
  });

  it('refuses malformed definitions with INVALID_DEFINITION', () => {
    const cases: [string, () => unknown, string][] = [
      [
        'no events',
        () => defineAggregate({ name: 'E', events: {}, machine: pure, commands: () => ({}) }),
        'declares no events',
      ],
      [
        'an event without a schema',
        () =>
          defineAggregate({
            name: 'E',
            events: { Started: {} as z.ZodType },
            machine: pure,
            commands: () => ({}),
          }),
        'event "Started" has no zod schema',
      ],
      [
        'no machine',
        () =>
          defineAggregate({
            name: 'E',
            events,
            machine: {} as AnyStateMachine,
            commands: () => ({}),
          }),
        'not an XState v5 machine',
      ],
      [
        'commands that are not a function',
        () => defineAggregate({ name: 'E', events, machine: pure, commands: {} as never }),
        'commands must be a function',
      ],
      [
        'a command not made with command()',
        () =>
          defineAggregate({
            name: 'E',
            events,
            machine: pure,
            commands: () => ({ start: { input: {}, decide: 'no' } as never }),
          }),
        'command "start" must be made with command(zodSchema, decide)',
      ],
    ];
    for (const [what, define, says] of cases) {
      const error = definitionErrorOf(define);
      expect(error.code, what).toBe('INVALID_DEFINITION');
      expect(error.message, what).toContain(says);
    }
  });

  describe('types', () => {
    it('infers the state, input and response of each command', async () => {
      const node = createNode({ domains: [bank], logger: silentLogger });
      const account = node.aggregate(Account, 'typed-1');
      await account.open({ owner: 'ann' });
      const reply = await account.deposit({ amount: 5 });

      expectTypeOf(reply.response).toEqualTypeOf<{ balance: number }>();
      expect(reply.response).toEqual({ balance: 5 });
      expectTypeOf(account.open)
        .parameter(0)
        .toEqualTypeOf<{ owner: string; overdraftLimit?: number }>();
      await node.stop();
    });

    it('refuses a wrong command name or input at compile time (and at run time)', async () => {
      const node = createNode({ domains: [bank], logger: silentLogger });
      const account = node.aggregate(Account, 'typed-2');

      // @ts-expect-error: Account has no command "transfer"
      expect(account.transfer).toBeUndefined();
      // @ts-expect-error: amount is a number
      const wrongType = await rejectionOf(account.deposit({ amount: '5' }));
      // @ts-expect-error: deposit takes { amount }
      const wrongField = await rejectionOf(account.deposit({ sum: 5 }));
      expect([wrongType.code, wrongField.code]).toEqual(['VALIDATION_FAILED', 'VALIDATION_FAILED']);
      await node.stop();
    });

    it('refuses an event of the wrong type or payload in decide at compile time (and at run time)', async () => {
      const Engine = defineAggregate({
        name: 'Engine',
        events,
        machine: pure,
        commands: (command) => ({
          // @ts-expect-error: Started carries a numeric rpm
          wrongPayload: command(z.object({}), () => ({
            type: 'Started',
            data: { rpm: 'fast' },
          })),
          wrongType: command(z.object({}), () => ({
            // @ts-expect-error: Engine has no event "Exploded"
            type: 'Exploded',
            data: {},
          })),
          typed: command(z.object({ rpm: z.number().default(800) }), (state, input, ctx) => {
            expectTypeOf(input).toEqualTypeOf<{ rpm: number }>();
            expectTypeOf(state.context).toEqualTypeOf<{ rpm: number }>();
            expectTypeOf(ctx.version).toBeNumber();
            return { type: 'Started', data: { rpm: input.rpm } };
          }),
        }),
      });
      const node = createNode({
        domains: [defineDomain({ name: 'garage', aggregates: [Engine] })],
        logger: silentLogger,
      });
      const ref = node.aggregate(Engine, 'e-1');
      expect((await rejectionOf(ref.wrongPayload({}))).code).toBe('INVALID_EVENT');
      expect((await rejectionOf(ref.wrongType({}))).code).toBe('INVALID_EVENT');
      expect((await ref.typed({})).events[0]?.data).toEqual({ rpm: 800 });
      await node.stop();
    });
  });
});
