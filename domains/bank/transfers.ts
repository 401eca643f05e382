import {
  defineReactor,
  DomainError,
  isRejectionError,
  type AggregateRef,
} from '../../runtime/index.js';
import { Account } from './account.js';
import { Transfer, type TransferStatus } from './transfer.js';

/** Why a command was refused, as a transfer records it. */
interface Refusal {
  code: string;
  reason: string;
}

/**
 * The transfer, when it is still at `step`; undefined when an earlier run of this handler already
 * recorded the outcome. Always the first command a handler sends: it stores nothing, so it is
 * decided again on every run and reads the transfer as it is now.
 */
async function still(transfer: AggregateRef<typeof Transfer>, step: TransferStatus) {
  const { response } = await transfer.status({});
  return response.status === step ? response : undefined;
}

/** Runs an account command; its rejection (refused for good) is returned, other errors thrown. */
async function refusalOf(command: Promise<unknown>): Promise<Refusal | undefined> {
  try {
    await command;
    return undefined;
  } catch (error) {
    if (isRejectionError(error)) return { code: error.code, reason: error.message };
    throw error;
  }
}

/**
 * The process manager of transfers: it reacts to each step a `Transfer` records with the next
 * account command, then records that command's outcome on the transfer.
 *
 * - `Requested`: withdraw from the source; `debit`, or `fail` when the source refuses.
 * - `Debited`: deposit into the target; `complete`, or `rejectDeposit` when the target refuses.
 * - `DepositRejected`: deposit the amount back into the source; `compensate`.
 *
 * Exactly once in effect: every command gets an id derived from this reactor and the event, so a
 * handler that runs again is answered from the first run; and each handler first asks the
 * transfer where it is, so an outcome already recorded is never decided again (an account's
 * refusal stores nothing, so it is recorded on the transfer before anything follows from it).
 * Handlers only listen to `Transfer` events (one filtered consumer), so account traffic costs it
 * nothing. A refund the source refuses (it was closed in between) throws `REFUND_REFUSED`: it is
 * retried, then dead-lettered, and the transfer stays `compensating` until it is replayed.
 */
export const transfers = defineReactor({
  name: 'transfers',
  aggregates: [Transfer],
  concurrency: 64,
  retry: { attempts: 10, backoffMs: 100, maxBackoffMs: 5_000 },
  on: {
    'Transfer.Requested': async (event, ctx) => {
      const transfer = ctx.aggregate(Transfer, event.meta.aggregateId);
      const now = await still(transfer, 'requested');
      if (now === undefined) return;
      const refused = await refusalOf(
        ctx.aggregate(Account, now.from).withdraw({ amount: now.amount }),
      );
      await (refused === undefined ? transfer.debit({}) : transfer.fail(refused));
    },
    'Transfer.Debited': async (event, ctx) => {
      const transfer = ctx.aggregate(Transfer, event.meta.aggregateId);
      const now = await still(transfer, 'debited');
      if (now === undefined) return;
      const refused = await refusalOf(
        ctx.aggregate(Account, now.to).deposit({ amount: now.amount }),
      );
      await (refused === undefined ? transfer.complete({}) : transfer.rejectDeposit(refused));
    },
    'Transfer.DepositRejected': async (event, ctx) => {
      const transfer = ctx.aggregate(Transfer, event.meta.aggregateId);
      const now = await still(transfer, 'compensating');
      if (now === undefined) return;
      const refused = await refusalOf(
        ctx.aggregate(Account, now.from).deposit({ amount: now.amount }),
      );
      if (refused !== undefined) {
        throw new DomainError(
          'REFUND_REFUSED',
          `Transfer ${event.meta.aggregateId} cannot pay ${now.amount} back into ${now.from}: ${refused.reason} (${refused.code}); the amount is held by the transfer. Settle it by hand and discard this dead letter, or replay it once the account takes deposits again.`,
          { transfer: event.meta.aggregateId, account: now.from, amount: now.amount, ...refused },
        );
      }
      await transfer.compensate({});
    },
  },
});
