import { AssertionError } from 'node:assert';
import { describe, expect, it } from 'vitest';
import {
  DomainError,
  RejectionError,
  TestClock,
  isDomainError,
  isRejectionError,
  testAggregate,
} from '../../runtime/index.js';
import { Account } from '../../domains/bank/index.js';
import { Aircraft } from '../../domains/flight/index.js';

const opened = { type: 'Opened', data: { owner: 'ann', overdraftLimit: 0 } } as const;
const deposited = (amount: number) => ({ type: 'Deposited', data: { amount } }) as const;

describe('testAggregate (given/when/then)', () => {
  const given = testAggregate(Account);

  it('decides a command on a new aggregate, applying the input schema defaults', async () => {
    const { result, state } = await given([])
      .when('open', { owner: 'ann' })
      .then([{ type: 'Opened', data: { owner: 'ann', overdraftLimit: 0 } }]);

    expect(result.version).toBe(1);
    expect(state).toMatchObject({ value: 'open', version: 1, context: { owner: 'ann' } });
  });

  it('decides on the state rebuilt from the given events and returns the response', async () => {
    const { result, state } = await given([opened, deposited(100)])
      .when('withdraw', { amount: 30 })
      .then([{ type: 'Withdrawn', data: { amount: 30 } }]);

    expect(result.response).toEqual({ balance: 70 });
    expect(result.version).toBe(3);
    expect(state.context).toEqual({ owner: 'ann', balance: 70, overdraftLimit: 0 });
  });

  it('lets a withdrawal use the overdraft limit', async () => {
    const { state } = await given([
      { type: 'Opened', data: { owner: 'ann', overdraftLimit: 50 } },
      deposited(10),
    ])
      .when('withdraw', { amount: 60 })
      .then([{ type: 'Withdrawn', data: { amount: 60 } }]);

    expect(state.context).toMatchObject({ balance: -50 });
  });

  it('rejects a withdrawal beyond balance and overdraft with INSUFFICIENT_FUNDS', async () => {
    const error = await given([
      { type: 'Opened', data: { owner: 'ann', overdraftLimit: 50 } },
      deposited(10),
    ])
      .when('withdraw', { amount: 61 })
      .thenError('INSUFFICIENT_FUNDS');

    expect(error).toBeInstanceOf(DomainError);
    expect(isDomainError(error)).toBe(true);
    expect(isRejectionError(error)).toBe(true);
    expect(error.retryable).toBe(false);
    expect(error.details).toEqual({ balance: 10, overdraftLimit: 50, amount: 61 });
    expect(error.message).toContain('61');
  });

  it('rejects closing an account whose balance is not zero with BALANCE_NOT_ZERO', async () => {
    const error = await given([opened, deposited(5)])
      .when('close', {})
      .thenError('BALANCE_NOT_ZERO');

    expect(isDomainError(error)).toBe(true);
    expect(error.details).toEqual({ balance: 5 });
  });

  it('closes an account whose balance is zero, after which it takes nothing', async () => {
    const { state } = await given([
      opened,
      deposited(5),
      { type: 'Withdrawn', data: { amount: 5 } },
    ])
      .when('close', {})
      .then([{ type: 'Closed', data: {} }]);
    expect(state.value).toBe('closed');

    const error = await given([opened, { type: 'Closed', data: {} }])
      .when('deposit', { amount: 1 })
      .thenError('INVALID_TRANSITION');
    expect(error.message).toContain('final state');
  });

  it('refuses an event the machine does not accept in its state with INVALID_TRANSITION, naming both', async () => {
    const error = await testAggregate(Aircraft)([{ type: 'TakenOff', data: {} }])
      .when('takeOff', {})
      .thenError('INVALID_TRANSITION');

    expect(error).toBeInstanceOf(RejectionError);
    expect(error.details).toEqual({ state: 'flying', event: 'TakenOff' });
    expect(error.message).toContain('"flying"');
    expect(error.message).toContain('"TakenOff"');
    expect(error.message).toContain('"takeOff"');
  });

  it('refuses a withdrawal from a frozen account through the machine', async () => {
    const error = await given([
      opened,
      deposited(10),
      { type: 'Frozen', data: { reason: 'audit' } },
    ])
      .when('withdraw', { amount: 1 })
      .thenError('INVALID_TRANSITION');

    expect(error.details).toEqual({ state: 'frozen', event: 'Withdrawn' });
  });

  it('rejects input that fails the command schema before decide', async () => {
    const error = await given([opened])
      .when('deposit', { amount: -5 })
      .thenError('VALIDATION_FAILED');

    expect(error.details).toMatchObject({ issues: [{ path: ['amount'] }] });
  });

  it('stamps events with the injected clock and the chosen aggregate id', async () => {
    const clock = new TestClock(Date.UTC(2030, 5, 1, 12));
    const { result } = await testAggregate(Account, { clock, id: 'acc-42' })([])
      .when('open', { owner: 'bob' }, { commandId: 'open-1', actor: 'teller-7' })
      .then([{ type: 'Opened', data: { owner: 'bob', overdraftLimit: 0 } }]);

    expect(result.events[0]?.meta).toMatchObject({
      aggregate: 'Account',
      aggregateId: 'acc-42',
      timestamp: Date.UTC(2030, 5, 1, 12),
      commandId: 'open-1',
      actor: 'teller-7',
    });
  });

  describe('fails the test', () => {
    it('when the command stores other events than expected', async () => {
      await expect(
        given([opened])
          .when('deposit', { amount: 5 })
          .then([deposited(6)]),
      ).rejects.toThrow(AssertionError);
    });

    it('when the command is rejected instead of storing events', async () => {
      await expect(
        given([opened])
          .when('withdraw', { amount: 5 })
          .then([{ type: 'Withdrawn', data: { amount: 5 } }]),
      ).rejects.toThrow(/rejected: .*Cannot withdraw 5/);
    });

    it('when the command succeeds instead of being rejected', async () => {
      await expect(
        given([opened]).when('deposit', { amount: 5 }).thenError('INSUFFICIENT_FUNDS'),
      ).rejects.toThrow(/stored 1 event/);
    });

    it('when the command is rejected with another code', async () => {
      await expect(
        given([opened, deposited(5)])
          .when('close', {})
          .thenError('INSUFFICIENT_FUNDS'),
      ).rejects.toThrow(AssertionError);
    });
  });

  it('checks command names, inputs and given events at compile time and at run time', async () => {
    await given([])
      // @ts-expect-error: Account has no command "transfer"
      .when('transfer', {})
      .thenError('UNKNOWN_COMMAND');
    await given([opened])
      // @ts-expect-error: deposit takes an amount
      .when('deposit', { sum: 5 })
      .thenError('VALIDATION_FAILED');
    // @ts-expect-error: Deposited carries a numeric amount
    await given([opened, { type: 'Deposited', data: { amount: '5' } }])
      .when('deposit', { amount: 1 })
      .thenError('REPLAY_FAILED');
    // @ts-expect-error: Account has no event "Robbed"
    await given([opened, { type: 'Robbed', data: {} }])
      .when('deposit', { amount: 1 })
      .thenError('REPLAY_FAILED');
  });
});
