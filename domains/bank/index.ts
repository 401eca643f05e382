import { defineDomain } from '../../runtime/index.js';
import { Account } from './account.js';

export { Account } from './account.js';

/** The bank domain: accounts. Used by tests and benchmarks. */
export const bank = defineDomain({ name: 'bank', aggregates: [Account] });

export default bank;
