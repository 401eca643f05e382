import { describe, expect, it } from 'vitest';
import { isDomainError, testAggregate } from '../../runtime/index.js';
import { Account, Transfer } from '../../domains/bank/index.js';

const requested = { type: 'Requested', data: { from: 'a', to: 'b', amount: 10 } } as const;
const debited = { type: 'Debited', data: {} } as const;
const refusal = { code: 'INVALID_TRANSITION', reason: 'Account "b" is closed' };

describe('the Transfer aggregate', () => {
  const given = testAggregate(Transfer, { id: 't-1' });

  it('is requested with its accounts and amount', async () => {
    const { state } = await given([])
      .when('request', { from: 'a', to: 'b', amount: 10 })
      .then([requested]);

    expect(state).toMatchObject({
      value: 'requested',
      context: { from: 'a', to: 'b', amount: 10, code: null, reason: null },
    });
  });

  it('refuses a transfer from an account to itself with SAME_ACCOUNT', async () => {
    const error = await given([])
      .when('request', { from: 'a', to: 'a', amount: 10 })
      .thenError('SAME_ACCOUNT');

    expect(isDomainError(error)).toBe(true);
    expect(error.message).toContain('from a to itself');
  });

  it('refuses a second request on the same transfer id with TRANSFER_EXISTS', async () => {
    const error = await given([requested, debited])
      .when('request', { from: 'c', to: 'd', amount: 5 })
      .thenError('TRANSFER_EXISTS');

    expect(error.message).toContain('Transfer t-1 was already requested (a → b, 10)');
    expect(error.message).toContain('is debited');
  });

  it.each([
    [{ from: 'a.b', to: 'c', amount: 1 }, 'from'],
    [{ from: 'a', to: 'c d', amount: 1 }, 'to'],
    [{ from: 'a', to: 'b', amount: 0 }, 'amount'],
    [{ from: 'a', to: 'b', amount: 1.5 }, 'amount'],
  ])('rejects the bad request %j with VALIDATION_FAILED naming %s', async (input, field) => {
    const error = await given([]).when('request', input).thenError('VALIDATION_FAILED');

    expect(error.message).toContain(`${field}:`);
  });

  it('completes after the debit and the deposit', async () => {
    const { state } = await given([requested, debited])
      .when('complete', {})
      .then([{ type: 'Completed', data: {} }]);

    expect(state.value).toBe('completed');
  });

  it('fails with the refusal of the source, before anything moved', async () => {
    const { state } = await given([requested])
      .when('fail', { code: 'INSUFFICIENT_FUNDS', reason: 'no money' })
      .then([{ type: 'Failed', data: { code: 'INSUFFICIENT_FUNDS', reason: 'no money' } }]);

    expect(state).toMatchObject({
      value: 'failed',
      context: { code: 'INSUFFICIENT_FUNDS', reason: 'no money' },
    });
  });

  it('compensates after the target refused the deposit', async () => {
    const rejected = await given([requested, debited])
      .when('rejectDeposit', refusal)
      .then([{ type: 'DepositRejected', data: refusal }]);
    expect(rejected.state).toMatchObject({ value: 'compensating', context: refusal });

    const { state } = await given([requested, debited, { type: 'DepositRejected', data: refusal }])
      .when('compensate', {})
      .then([{ type: 'Compensated', data: {} }]);
    expect(state).toMatchObject({ value: 'compensated', context: refusal });
  });

  it('takes each step only in its place, so a step recorded once is never recorded again', async () => {
    await given([]).when('debit', {}).thenError('INVALID_TRANSITION');
    await given([requested]).when('complete', {}).thenError('INVALID_TRANSITION');
    await given([requested, debited]).when('debit', {}).thenError('INVALID_TRANSITION');
    await given([requested, debited]).when('fail', refusal).thenError('INVALID_TRANSITION');
    await given([requested, { type: 'Failed', data: refusal }])
      .when('debit', {})
      .thenError('INVALID_TRANSITION');
    await given([requested, debited, { type: 'Completed', data: {} }])
      .when('rejectDeposit', refusal)
      .thenError('INVALID_TRANSITION');
    await given([requested, debited, { type: 'DepositRejected', data: refusal }])
      .when('complete', {})
      .thenError('INVALID_TRANSITION');
  });

  it('answers its status without storing anything', async () => {
    const { result } = await given([requested, debited]).when('status', {}).then([]);

    expect(result.version).toBe(2);
    expect(result.response).toEqual({
      status: 'debited',
      from: 'a',
      to: 'b',
      amount: 10,
      code: null,
      reason: null,
    });
  });
});

describe('an account as the other side of a transfer', () => {
  const given = testAggregate(Account, { id: 'b' });
  const opened = { type: 'Opened', data: { owner: 'bob', overdraftLimit: 0 } } as const;

  it('rejects a deposit when it was never opened', async () => {
    const error = await given([]).when('deposit', { amount: 10 }).thenError('INVALID_TRANSITION');

    expect(error.message).toContain('"new"');
  });

  it('rejects a deposit once it is closed', async () => {
    await given([opened, { type: 'Closed', data: {} }])
      .when('deposit', { amount: 10 })
      .thenError('INVALID_TRANSITION');
  });

  it('rejects a withdrawal when it was never opened', async () => {
    await given([]).when('withdraw', { amount: 10 }).thenError('INVALID_TRANSITION');
  });
});
