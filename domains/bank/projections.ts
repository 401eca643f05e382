import { z } from 'zod';
import { defineProjection, defineQuery, kvReadModel } from '../../runtime/index.js';
import { Account } from './account.js';

/** A document of the `balances` read model: one per account (`account:<id>`) and per owner (`owner:<name>`). */
export const BalanceDocument = z.union([
  z.object({ kind: z.literal('account'), owner: z.string(), balance: z.number().int() }),
  z.object({
    kind: z.literal('owner'),
    owner: z.string(),
    total: z.number().int(),
    accounts: z.array(z.string()),
  }),
]);

/** A document of the `balances` read model. */
export type BalanceDocument = z.infer<typeof BalanceDocument>;

type AccountDocument = Extract<BalanceDocument, { kind: 'account' }>;
type OwnerDocument = Extract<BalanceDocument, { kind: 'owner' }>;

/**
 * Balances per account and per owner, in the NATS KV bucket `<prefix>_rm_bank_balances`. A
 * deposit changes two documents (the account's and its owner's); both are written in the same
 * batch as the checkpoint, so they never disagree after a crash.
 */
export const balances = defineProjection({
  name: 'balances',
  aggregates: [Account],
  store: kvReadModel({ document: BalanceDocument }),
  on: {
    'Account.Opened': async (event, { documents }) => {
      const id = event.meta.aggregateId;
      const { owner } = event.data;
      await documents.put(`account:${id}`, { kind: 'account', owner, balance: 0 });
      const known = (await documents.get(`owner:${owner}`)) as OwnerDocument | undefined;
      await documents.put(`owner:${owner}`, {
        kind: 'owner',
        owner,
        total: known?.total ?? 0,
        accounts: [...(known?.accounts ?? []), id],
      });
    },
    'Account.Deposited': (event, { documents }) =>
      credit(documents, event.meta.aggregateId, event.data.amount),
    'Account.Withdrawn': (event, { documents }) =>
      credit(documents, event.meta.aggregateId, -event.data.amount),
  },
});

async function credit(
  documents: {
    get(key: string): Promise<BalanceDocument | undefined>;
    put(key: string, doc: BalanceDocument): Promise<void>;
  },
  id: string,
  amount: number,
): Promise<void> {
  const account = (await documents.get(`account:${id}`)) as AccountDocument | undefined;
  if (account === undefined)
    throw new Error(`account ${id} has no Opened event before its first movement`);
  await documents.put(`account:${id}`, { ...account, balance: account.balance + amount });
  const owner = (await documents.get(`owner:${account.owner}`)) as OwnerDocument | undefined;
  if (owner !== undefined) {
    await documents.put(`owner:${account.owner}`, { ...owner, total: owner.total + amount });
  }
}

/** The balance of one account, from the `balances` read model; null when it is not there (yet). */
export const balance = defineQuery({
  name: 'balance',
  input: z.object({ account: z.string().min(1) }),
  projections: [balances],
  handler: async ({ account }, ctx) => {
    const doc = (await ctx.readModel(balances).get(`account:${account}`)) as
      AccountDocument | undefined;
    return doc === undefined ? null : { account, owner: doc.owner, balance: doc.balance };
  },
});

/** What one owner holds over all their accounts; null when they have none. */
export const holdings = defineQuery({
  name: 'holdings',
  input: z.object({ owner: z.string().min(1) }),
  projections: [balances],
  handler: async ({ owner }, ctx) => {
    const doc = (await ctx.readModel(balances).get(`owner:${owner}`)) as OwnerDocument | undefined;
    return doc === undefined ? null : { owner, total: doc.total, accounts: doc.accounts };
  },
});
