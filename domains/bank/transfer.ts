import { assign, setup } from 'xstate';
import { z } from 'zod';
import {
  defineAggregate,
  DomainError,
  isSubjectToken,
  type DomainEvents,
} from '../../runtime/index.js';

/** Amounts are integers in the smallest currency unit (cents), as on accounts. */
const amount = z.number().int().positive().max(1_000_000_000_00);

const accountId = z.string().refine(isSubjectToken, {
  message:
    'an account id is one NATS subject token: 1 to 256 characters, no ".", "*", ">" or whitespace',
});

/** Why an account refused a step: the code and message of its rejection. */
const refusal = z.object({ code: z.string().min(1), reason: z.string() });

const events = {
  Requested: z.object({ from: accountId, to: accountId, amount }),
  Debited: z.object({}),
  Failed: refusal,
  Completed: z.object({}),
  DepositRejected: refusal,
  Compensated: z.object({}),
};

export interface TransferContext {
  from: string;
  to: string;
  amount: number;
  /** Code of the refusal that made it fail or compensate; null otherwise. */
  code: string | null;
  /** Message of that refusal; null otherwise. */
  reason: string | null;
}

/**
 * Where a transfer is: `requested` (nothing moved yet), `debited` (the source paid),
 * `compensating` (the target refused, the source is being paid back), and the final
 * `completed`, `compensated` (paid back) and `failed` (the source refused, nothing moved).
 */
export type TransferStatus =
  'new' | 'requested' | 'debited' | 'compensating' | 'completed' | 'compensated' | 'failed';

const machine = setup({
  types: {
    context: {} as TransferContext,
    events: {} as DomainEvents<typeof events>,
  },
  actions: {
    refused: assign(({ event }) =>
      event.type === 'Failed' || event.type === 'DepositRejected'
        ? { code: event.data.code, reason: event.data.reason }
        : {},
    ),
  },
}).createMachine({
  id: 'Transfer',
  initial: 'new',
  context: { from: '', to: '', amount: 0, code: null, reason: null },
  states: {
    new: {
      on: {
        Requested: {
          target: 'requested',
          actions: assign(({ event }) => ({ ...event.data })),
        },
      },
    },
    requested: {
      on: {
        Debited: { target: 'debited' },
        Failed: { target: 'failed', actions: 'refused' },
      },
    },
    debited: {
      on: {
        Completed: { target: 'completed' },
        DepositRejected: { target: 'compensating', actions: 'refused' },
      },
    },
    compensating: {
      on: { Compensated: { target: 'compensated' } },
    },
    completed: { type: 'final' },
    compensated: { type: 'final' },
    failed: { type: 'final' },
  },
});

/**
 * A money transfer between two accounts of the bank, driven by the `transfers` process manager:
 * `request` starts it; the process manager withdraws from the source (`debit`, or `fail` when the
 * source refuses), deposits into the target (`complete`, or `rejectDeposit` when the target
 * refuses, e.g. closed or never opened) and then pays the source back (`compensate`). `status`
 * stores nothing and answers where the transfer is.
 */
export const Transfer = defineAggregate({
  name: 'Transfer',
  events,
  machine,
  commands: (command) => ({
    request: command(z.object({ from: accountId, to: accountId, amount }), (state, input, ctx) => {
      if (!state.matches('new')) {
        const { from, to, amount: was } = state.context;
        throw new DomainError(
          'TRANSFER_EXISTS',
          `Transfer ${ctx.aggregateId} was already requested (${from} → ${to}, ${was}) and is ${String(state.value)}; start another transfer with a new id.`,
          { status: state.value, from, to, amount: was },
        );
      }
      if (input.from === input.to) {
        throw new DomainError(
          'SAME_ACCOUNT',
          `Transfer ${ctx.aggregateId} goes from ${input.from} to itself; name two different accounts.`,
          { account: input.from },
        );
      }
      return { type: 'Requested', data: input };
    }),
    status: command(z.object({}), (state) => ({
      events: [],
      response: { status: String(state.value) as TransferStatus, ...state.context },
    })),
    debit: command(z.object({}), () => ({ type: 'Debited', data: {} })),
    fail: command(refusal, (_state, input) => ({ type: 'Failed', data: input })),
    complete: command(z.object({}), () => ({ type: 'Completed', data: {} })),
    rejectDeposit: command(refusal, (_state, input) => ({ type: 'DepositRejected', data: input })),
    compensate: command(z.object({}), () => ({ type: 'Compensated', data: {} })),
  }),
});
