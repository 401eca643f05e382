/**
 * The domain the throughput scenarios host: the bank domain's `Account` aggregate alone, under the
 * bank domain's name (same stream, same subjects), without the bank domain's reactors and
 * projections. So a throughput scenario measures commands only, whatever the bank domain adds;
 * the reactor and projection scenarios add what they measure on purpose.
 *
 * Also a domain module for `jetactor node` (the end-to-end contender runs
 * `jetactor node dist/bench/bench-domain.js`): it exports this one domain.
 */
import { defineDomain } from '../runtime/index.js';
import { Account } from '../domains/bank/account.js';

/** `bank` with the `Account` aggregate only: no reactor, no projection. */
export const benchBank = defineDomain({ name: 'bank', aggregates: [Account] });
