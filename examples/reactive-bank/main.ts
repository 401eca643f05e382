/**
 * The reactive bank: commands, a reactor, a projection and queries, on NATS JetStream.
 *
 * A reactor credits every new account with a welcome bonus; the bundled `balances` projection
 * keeps balances per account and per owner in a NATS KV bucket; the `balance` and `holdings`
 * queries read it over NATS, and `waitFor` makes them see the write just made.
 *
 *   npm run build && node dist/examples/reactive-bank/main.js
 *
 * Uses the server at NATS_URL, else starts an embedded nats-server (when installed) in a temp dir.
 */
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { Account, balance, balances, holdings } from '../../domains/bank/index.js';
import {
  CommandRouter,
  JetStreamEventStore,
  LocalNatsServer,
  QueryServer,
  bundledNatsConfig,
  createClient,
  createLogger,
  createNode,
  defineDomain,
  defineReactor,
} from '../../runtime/index.js';

const BONUS = 100;

/** Every new account gets a welcome bonus, once: the deposit's command id comes from the event. */
const welcome = defineReactor({
  name: 'welcome',
  aggregates: [Account],
  on: {
    'Account.Opened': async (event, ctx) => {
      await ctx.aggregate(Account, event.meta.aggregateId).deposit({ amount: BONUS });
    },
  },
});

const bank = defineDomain({
  name: 'bank',
  aggregates: [Account],
  reactors: [welcome],
  projections: [balances],
  queries: [balance, holdings],
});

const logger = createLogger('warn');
const server = process.env.NATS_URL
  ? undefined
  : await LocalNatsServer.start({
      ...(bundledNatsConfig() === undefined ? {} : { config: bundledNatsConfig() }),
      logger,
    });
const url = process.env.NATS_URL ?? server!.url;
// A prefix of its own, so runs never meet each other's streams and buckets.
const prefix = `example_${randomBytes(3).toString('hex')}`;
console.log(`NATS at ${url}${server === undefined ? '' : ' (embedded)'}, prefix ${prefix}`);

const nc = await connect({ servers: url });
const store = await JetStreamEventStore.open({ connection: nc, prefix });
const node = createNode({ domains: [bank], store, logger });
await node.start();
const router = new CommandRouter({ node, connection: nc, prefix, logger });
const queries = new QueryServer({ node, connection: nc, prefix, logger });
await router.start();
await queries.start();

// From here on, everything goes over NATS, as from another process.
const client = createClient({ connection: nc, prefix, domains: [bank] });
const opened = await client.aggregate(Account, 'acc-1').open({ owner: 'ann' });
console.log(`open acc-1 → version ${opened.version}, position ${opened.position}`);
const deposit = await client.aggregate(Account, 'acc-1').deposit({ amount: 50 });
console.log(`deposit 50 → position ${deposit.position}`);

// Read your write: the query waits until the projection has applied that position.
const seen = await client.query(
  bank,
  'balance',
  { account: 'acc-1' },
  { waitFor: deposit.position },
);
console.log(`balance (waitFor ${deposit.position}):`, seen);

// The reactor's bonus arrives on its own; its deposit has a command id derived from the event.
let withBonus = seen;
while ((withBonus?.balance ?? 0) < 50 + BONUS) {
  await new Promise((resolve) => setTimeout(resolve, 20));
  withBonus = await client.query(bank, 'balance', { account: 'acc-1' });
}
console.log('balance after the welcome bonus:', withBonus);

await client.aggregate(Account, 'acc-2').open({ owner: 'ann' });
const last = await client.aggregate(Account, 'acc-2').deposit({ amount: 5 });
console.log(
  'holdings of ann:',
  await client.query(bank, 'holdings', { owner: 'ann' }, { waitFor: last.position }),
);

try {
  await client.query(bank, 'balance', { account: '' });
} catch (error) {
  console.log('balance with an empty account →', (error as { code: string }).code);
}

const { projections, reactors } = node.stats();
console.log('projection bank.balances:', {
  state: projections['bank.balances']?.state,
  position: projections['bank.balances']?.position,
  lag: projections['bank.balances']?.lag,
});
console.log('reactor bank.welcome handled:', reactors['bank.welcome']?.handled);

client.close();
await queries.stop();
await router.stop();
await node.stop();
await store.close();
await nc.close();
await server?.cleanup();
