import { strict as assert } from 'node:assert';
import type { AggregateView } from '../aggregate/aggregate-actor.js';
import type { CommandOptions, CommandResult } from '../aggregate/command.js';
import type { AnyAggregateDefinition, CommandInput } from '../domain/define-aggregate.js';
import { defineDomain } from '../domain/define-domain.js';
import type { NewEvent } from '../domain/events.js';
import { JetactorError } from '../errors.js';
import { InMemoryEventStore } from '../event-store/in-memory-event-store.js';
import { createLogger } from '../logger.js';
import { createNode } from '../node/domain-node.js';
import { TestClock } from './test-clock.js';

type EventsOf<A extends AnyAggregateDefinition> = NewEvent<A['events']>;

/** What a passing `then` gives back, for further checks. */
export interface ThenResult {
  /** The command's reply. */
  result: CommandResult;
  /** The aggregate's state after the command. */
  state: AggregateView;
}

/** The `when` step. */
export interface When<A extends AnyAggregateDefinition> {
  /** Asserts the command stores exactly these events (type and data, in order). */
  then(expected: readonly EventsOf<A>[]): Promise<ThenResult>;
  /** Asserts the command is rejected with this code and stores nothing; returns the error. */
  thenError(code: string): Promise<JetactorError>;
}

/** The `given` step. */
export interface Given<A extends AnyAggregateDefinition> {
  /** The command to run on the aggregate built from the given events. */
  when<K extends keyof A['commands'] & string>(
    command: K,
    input: CommandInput<A['commands'][K]>,
    options?: CommandOptions,
  ): When<A>;
}

/** Options of {@link testAggregate}. */
export interface TestAggregateOptions {
  /** Aggregate id used for the test (default `test-1`). */
  id?: string;
  /** Clock seen by decide (default a {@link TestClock}). */
  clock?: TestClock;
}

/**
 * Given/when/then for one aggregate, without NATS: the given events are stored in an in-memory
 * store, replayed, and the command runs through the same path as in production.
 *
 * @example
 * const given = testAggregate(Aircraft);
 * await given([]).when('takeOff', {}).then([{ type: 'TakenOff', data: {} }]);
 * await given([{ type: 'TakenOff', data: {} }]).when('takeOff', {}).thenError('INVALID_TRANSITION');
 */
export function testAggregate<A extends AnyAggregateDefinition>(
  aggregate: A,
  options: TestAggregateOptions = {},
): (events: readonly EventsOf<A>[]) => Given<A> {
  const id = options.id ?? 'test-1';
  return (history) => ({
    when: (command, input, commandOptions) => {
      const run = async () => {
        const clock = options.clock ?? new TestClock();
        const store = new InMemoryEventStore({ clock });
        const domain = defineDomain({ name: 'test', aggregates: [aggregate] });
        if (history.length > 0) {
          await store.append({
            stream: { domain: domain.name, aggregate: aggregate.name, id },
            expectedPosition: 0,
            dedupId: 'given',
            events: history.map((event, index) => ({
              type: event.type,
              data: event.data,
              meta: {
                domain: domain.name,
                aggregate: aggregate.name,
                aggregateId: id,
                version: index + 1,
                timestamp: clock.now(),
                commandId: 'given',
                correlationId: 'given',
                causationId: 'given',
              },
            })),
            commands: [{ id: 'given' }],
          });
        }
        const node = createNode({
          domains: [domain],
          store,
          clock,
          logger: createLogger('silent'),
        });
        const outcome = await node
          .execute({ ...commandOptions, aggregate: aggregate.name, id, command, input })
          .then(
            (result) => ({ ok: true as const, result }),
            (error: unknown) => ({ ok: false as const, error }),
          );
        const state = await node.view(aggregate, id).catch(() => undefined);
        await node.stop(1000);
        return { outcome, state, stored: state?.version ?? history.length };
      };
      return {
        then: async (expected) => {
          const { outcome, state } = await run();
          if (!outcome.ok) {
            throw new assert.AssertionError({
              message: `Expected ${command} to store events, but it was rejected: ${String(outcome.error)}`,
              actual: outcome.error,
              expected,
            });
          }
          assert.deepStrictEqual(
            outcome.result.events.map((e) => ({ type: e.type, data: e.data })),
            expected.map((e) => ({ type: e.type, data: e.data })),
          );
          return { result: outcome.result, state: state as AggregateView };
        },
        thenError: async (code) => {
          const { outcome, stored } = await run();
          if (outcome.ok) {
            throw new assert.AssertionError({
              message: `Expected ${command} to be rejected with ${code}, but it stored ${outcome.result.events.length} event(s)`,
              actual: outcome.result.events,
              expected: code,
            });
          }
          assert.ok(
            outcome.error instanceof JetactorError,
            `Expected a JetactorError, got ${String(outcome.error)}`,
          );
          assert.equal(outcome.error.code, code, outcome.error.message);
          assert.equal(stored, history.length, 'a rejected command must store nothing');
          return outcome.error;
        },
      };
    },
  });
}
