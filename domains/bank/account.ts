import { assign, setup } from 'xstate';
import { z } from 'zod';
import { defineAggregate, DomainError, type DomainEvents } from '../../runtime/index.js';

/** Amounts are integers in the smallest currency unit (cents). */
const amount = z.number().int().positive().max(1_000_000_000_00);

const events = {
  Opened: z.object({ owner: z.string().min(1), overdraftLimit: z.number().int().nonnegative() }),
  Deposited: z.object({ amount }),
  Withdrawn: z.object({ amount }),
  Frozen: z.object({ reason: z.string() }),
  Unfrozen: z.object({}),
  Closed: z.object({}),
};

export interface AccountContext {
  owner: string;
  balance: number;
  overdraftLimit: number;
}

const machine = setup({
  types: {
    context: {} as AccountContext,
    events: {} as DomainEvents<typeof events>,
  },
  actions: {
    deposit: assign(({ context, event }) => ({
      balance: context.balance + (event.type === 'Deposited' ? event.data.amount : 0),
    })),
  },
}).createMachine({
  id: 'Account',
  initial: 'new',
  context: { owner: '', balance: 0, overdraftLimit: 0 },
  states: {
    new: {
      on: {
        Opened: {
          target: 'open',
          actions: assign(({ event }) => ({
            owner: event.data.owner,
            overdraftLimit: event.data.overdraftLimit,
          })),
        },
      },
    },
    open: {
      on: {
        Deposited: { actions: 'deposit' },
        Withdrawn: {
          actions: assign(({ context, event }) => ({
            balance: context.balance - event.data.amount,
          })),
        },
        Frozen: { target: 'frozen' },
        Closed: { target: 'closed' },
      },
    },
    frozen: {
      on: {
        Deposited: { actions: 'deposit' },
        Unfrozen: { target: 'open' },
      },
    },
    closed: { type: 'final' },
  },
});

/**
 * A bank account: open, deposit, withdraw within the overdraft limit, freeze and unfreeze
 * (a frozen account takes deposits but no withdrawals), close when the balance is zero.
 */
export const Account = defineAggregate({
  name: 'Account',
  events,
  machine,
  commands: (command) => ({
    open: command(
      z.object({
        owner: z.string().min(1),
        overdraftLimit: z.number().int().nonnegative().default(0),
      }),
      (_state, input) => ({ type: 'Opened', data: input }),
    ),
    deposit: command(z.object({ amount }), (state, input) => ({
      events: [{ type: 'Deposited', data: { amount: input.amount } }],
      response: { balance: state.context.balance + input.amount },
    })),
    withdraw: command(z.object({ amount }), (state, input) => {
      const available = state.context.balance + state.context.overdraftLimit;
      if (state.matches('open') && input.amount > available) {
        throw new DomainError(
          'INSUFFICIENT_FUNDS',
          `Cannot withdraw ${input.amount}: balance ${state.context.balance} plus overdraft ${state.context.overdraftLimit} allows at most ${available}.`,
          {
            balance: state.context.balance,
            overdraftLimit: state.context.overdraftLimit,
            amount: input.amount,
          },
        );
      }
      return {
        events: [{ type: 'Withdrawn', data: { amount: input.amount } }],
        response: { balance: state.context.balance - input.amount },
      };
    }),
    freeze: command(z.object({ reason: z.string().default('') }), (_state, input) => ({
      type: 'Frozen',
      data: input,
    })),
    unfreeze: command(z.object({}), () => ({ type: 'Unfrozen', data: {} })),
    close: command(z.object({}), (state) => {
      if (state.context.balance !== 0) {
        throw new DomainError(
          'BALANCE_NOT_ZERO',
          `Cannot close an account whose balance is ${state.context.balance}; withdraw or deposit to zero first.`,
          { balance: state.context.balance },
        );
      }
      return { type: 'Closed', data: {} };
    }),
  }),
});
