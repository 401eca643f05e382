import { defineDomain } from '../../runtime/index.js';
import { Account } from './account.js';
import { balance, balances, holdings } from './projections.js';
import { Transfer } from './transfer.js';
import { transfers } from './transfers.js';

export { Account } from './account.js';
export { BalanceDocument, balance, balances, holdings } from './projections.js';
export { Transfer } from './transfer.js';
export type { TransferContext, TransferStatus } from './transfer.js';
export { transfers } from './transfers.js';

/**
 * The bank domain: accounts, transfers between them (the `transfers` process manager), their
 * balances (a projection) and queries on them. Used by tests and benchmarks.
 */
export const bank = defineDomain({
  name: 'bank',
  aggregates: [Account, Transfer],
  reactors: [transfers],
  projections: [balances],
  queries: [balance, holdings],
});

export default bank;
