import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Account } from '../../domains/bank/index.js';
import {
  CommandRouter,
  JetStreamDeadLetterStore,
  JetStreamEventStore,
  KvReadModelStore,
  PostgresReadModelStore,
  QueryServer,
  createClient,
  createNode,
  defineDomain,
  defineProjection,
  defineQuery,
  isRejectionError,
  kvReadModel,
  postgresReadModel,
  projectionSchema,
  type DocumentReader,
  type DomainDefinition,
  type DomainNode,
  type NodeOptions,
  type SqlClient,
} from '../../runtime/index.js';
import { connectShared, uniqueName } from '../helpers/nats.js';
import { dropSchemas, testDatabaseUrl, testPool } from '../helpers/postgres.js';
import { rejectionOf, silentLogger } from '../fixtures/test-support.js';

const Balance = z.object({ owner: z.string(), balance: z.number().int() });

/** Balances per account in NATS KV. */
const balances = defineProjection({
  name: 'balances',
  aggregates: [Account],
  store: kvReadModel({ document: Balance }),
  on: {
    'Account.Opened': async (event, { documents }) => {
      await documents.put(event.meta.aggregateId, { owner: event.data.owner, balance: 0 });
    },
    'Account.Deposited': async (event, { documents }) => {
      const doc = await documents.get(event.meta.aggregateId);
      if (doc === undefined) throw new Error(`no account ${event.meta.aggregateId}`);
      await documents.put(event.meta.aggregateId, {
        ...doc,
        balance: doc.balance + event.data.amount,
      });
    },
    'Account.Withdrawn': async (event, { documents }) => {
      const doc = await documents.get(event.meta.aggregateId);
      if (doc === undefined) throw new Error(`no account ${event.meta.aggregateId}`);
      await documents.put(event.meta.aggregateId, {
        ...doc,
        balance: doc.balance - event.data.amount,
      });
    },
  },
});

/** Balances per owner and every movement, in PostgreSQL tables. */
const ledger = defineProjection({
  name: 'ledger',
  aggregates: [Account],
  store: postgresReadModel({
    migrate: [
      'CREATE TABLE accounts (id text PRIMARY KEY, owner text NOT NULL)',
      'CREATE TABLE owners (owner text PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)',
      'CREATE TABLE movements (account text, version int, amount bigint NOT NULL, PRIMARY KEY (account, version))',
    ],
  }),
  on: {
    'Account.Opened': async (event, { sql }) => {
      await sql.query('INSERT INTO accounts (id, owner) VALUES ($1, $2)', [
        event.meta.aggregateId,
        event.data.owner,
      ]);
      // A handler may return the query's promise (its result is ignored).
      return sql.query('INSERT INTO owners (owner) VALUES ($1) ON CONFLICT DO NOTHING', [
        event.data.owner,
      ]);
    },
    'Account.Deposited': (event, { sql }) =>
      move(sql, event.meta.aggregateId, event.meta.version, event.data.amount),
    'Account.Withdrawn': (event, { sql }) =>
      move(sql, event.meta.aggregateId, event.meta.version, -event.data.amount),
  },
});

async function move(
  sql: SqlClient,
  account: string,
  version: number,
  amount: number,
): Promise<void> {
  await sql.query('INSERT INTO movements (account, version, amount) VALUES ($1, $2, $3)', [
    account,
    version,
    amount,
  ]);
  await sql.query(
    'UPDATE owners SET balance = balance + $2 FROM accounts WHERE accounts.id = $1 AND owners.owner = accounts.owner',
    [account, amount],
  );
}

const balance = defineQuery({
  name: 'balance',
  input: z.object({ account: z.string().min(1) }),
  projections: [balances],
  handler: async ({ account }, ctx) => (await ctx.readModel(balances).get(account)) ?? null,
});

const owner = defineQuery({
  name: 'owner',
  input: z.object({ owner: z.string().min(1) }),
  projections: [ledger],
  handler: async (input, ctx) => {
    const { rows } = await ctx
      .readModel(ledger)
      .query<{ balance: string }>('SELECT balance FROM owners WHERE owner = $1', [input.owner]);
    return rows[0] === undefined ? null : Number(rows[0].balance);
  },
});

const bank = defineDomain({
  name: 'bank',
  aggregates: [Account],
  projections: [balances, ledger],
  queries: [balance, owner],
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}

describe('projections on JetStream', () => {
  let nc: NatsConnection;
  let pool: pg.Pool;
  const schemas = new Set<string>();
  const nodes: DomainNode[] = [];

  beforeAll(async () => {
    nc = await connectShared();
    pool = await testPool();
  });

  afterAll(async () => {
    for (const node of nodes) await node.stop(1_000).catch(() => undefined);
    await dropSchemas(pool, schemas);
    await pool.end();
    await nc.close();
  });

  /** A node hosting `domain` under a new prefix; its PostgreSQL schemas are dropped afterwards. */
  async function startNode(
    prefix: string,
    domain: DomainDefinition = bank,
    options: Partial<NodeOptions> = {},
  ): Promise<DomainNode> {
    for (const p of domain.projections) schemas.add(projectionSchema(prefix, domain.name, p.name));
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const node = createNode({
      domains: [domain],
      store,
      logger: silentLogger,
      ...options,
      projections: {
        databaseUrl: testDatabaseUrl(),
        leaseMs: 1_000,
        ackWaitMs: 2_000,
        ...options.projections,
      },
    });
    nodes.push(node);
    await node.start();
    return node;
  }

  async function writeSome(node: DomainNode, ids: string[], deposits: number): Promise<number> {
    let position = 0;
    for (const id of ids)
      await node.aggregate(Account, id).open({ owner: `owner-${id.length % 2}` });
    for (let i = 1; i <= deposits; i++) {
      const results = await Promise.all(
        ids.map((id) => node.aggregate(Account, id).deposit({ amount: i })),
      );
      position = Math.max(position, ...results.map((r) => r.position));
    }
    const last = await node.aggregate(Account, ids[0]!).withdraw({ amount: 1 });
    return Math.max(position, last.position);
  }

  async function kvState(node: DomainNode): Promise<Record<string, unknown>> {
    const reader = node.projections.readModel('bank', 'balances') as DocumentReader<unknown>;
    const list = await reader.list();
    return Object.fromEntries(list.map((e) => [e.key, e.document]).sort());
  }

  async function pgState(prefix: string): Promise<unknown> {
    const schema = projectionSchema(prefix, 'bank', 'ledger');
    const owners = await pool.query(`SELECT owner, balance FROM "${schema}".owners ORDER BY owner`);
    const movements = await pool.query(
      `SELECT account, version, amount FROM "${schema}".movements ORDER BY account, version`,
    );
    return { owners: owners.rows, movements: movements.rows };
  }

  it('builds a KV and a PostgreSQL read model from the same events, on a durable consumer per projection', async () => {
    const prefix = uniqueName('px');
    const node = await startNode(prefix);
    const ids = ['a', 'bb', 'c'];
    const position = await writeSome(node, ids, 4);
    expect(await node.projections.waitFor('bank', 'balances', position, 10_000)).toBe(true);
    expect(await node.projections.waitFor('bank', 'ledger', position, 10_000)).toBe(true);

    expect(await kvState(node)).toEqual({
      a: { owner: 'owner-1', balance: 9 },
      bb: { owner: 'owner-0', balance: 10 },
      c: { owner: 'owner-1', balance: 10 },
    });
    const schema = projectionSchema(prefix, 'bank', 'ledger');
    const owners = await pool.query(
      `SELECT owner, balance::int FROM "${schema}".owners ORDER BY owner`,
    );
    expect(owners.rows).toEqual([
      { owner: 'owner-0', balance: 10 },
      { owner: 'owner-1', balance: 19 },
    ]);
    const checkpoint = await pool.query(
      `SELECT position::int FROM "${schema}".jetactor_checkpoint`,
    );
    expect(checkpoint.rows).toEqual([{ position }]);

    const jsm = await jetstreamManager(nc);
    const info = await jsm.consumers.info(`${prefix}_bank`, `${prefix}_bank_rm_balances`);
    expect(info.config).toMatchObject({
      ack_policy: 'all',
      filter_subject: `${prefix}.evt.bank.>`,
    });
    const kv = await new Kvm(nc).open(`${prefix}_rm_bank_balances`);
    expect((await kv.get('checkpoint'))?.json()).toMatchObject({ position });
    expect(node.stats().projections['bank.balances']).toMatchObject({
      state: 'running',
      store: 'kv',
      position,
      lag: 0,
    });
    expect(node.stats().projections['bank.ledger']).toMatchObject({ store: 'postgres', position });
  });

  it('answers queries over NATS: waitFor sees the write just made, bad input is a typed rejection', async () => {
    const prefix = uniqueName('px');
    const node = await startNode(prefix);
    const router = new CommandRouter({ node, connection: nc, prefix, logger: silentLogger });
    const queries = new QueryServer({ node, connection: nc, prefix, logger: silentLogger });
    await router.start();
    await queries.start();
    const client = createClient({ connection: nc, prefix, domains: [bank] });
    try {
      await client.aggregate(Account, 'q1').open({ owner: 'ann' });
      for (let i = 0; i < 20; i++) {
        const result = await client.aggregate(Account, 'q1').deposit({ amount: 1 });
        const seen = await client.query(
          bank,
          'balance',
          { account: 'q1' },
          { waitFor: result.position },
        );
        expect(seen?.balance).toBe(i + 1);
        const total = await client.query(
          bank,
          'owner',
          { owner: 'ann' },
          { waitFor: result.position },
        );
        expect(total).toBe(i + 1);
      }

      const invalid = await rejectionOf(client.query(bank, 'balance', { account: 5 } as never));
      expect(isRejectionError(invalid)).toBe(true);
      expect(invalid.code).toBe('VALIDATION_FAILED');
      expect((invalid.details as { issues: unknown[] }).issues[0]).toMatchObject({
        path: ['account'],
      });
      expect((await rejectionOf(client.query('bank', 'nope', {}))).code).toBe('UNKNOWN_QUERY');

      const started = Date.now();
      const behind = await rejectionOf(
        client.query(bank, 'balance', { account: 'q1' }, { waitFor: 1e9, waitTimeoutMs: 100 }),
      );
      expect(behind).toMatchObject({ code: 'PROJECTION_BEHIND', kind: 'infrastructure' });
      expect(Date.now() - started).toBeLessThan(1_500); // not retried by the client

      const h = headers();
      h.set('Jetactor-Wait-For', 'soon');
      const reply = await nc.request(`${prefix}.qry.bank.balance`, '{"account":"q1"}', {
        headers: h,
        timeout: 2_000,
      });
      expect(reply.headers?.get('Jetactor-Error-Code')).toBe('INVALID_HEADER');
      expect(queries.endpoints()[0]).toMatchObject({ name: 'qry-bank', rejected: 3, failed: 1 });
    } finally {
      client.close();
      await queries.stop();
      await router.stop();
    }
  });

  it('rebuilds both read models from the start of the stream to the same state as the live ones', async () => {
    const prefix = uniqueName('px');
    const node = await startNode(prefix);
    const position = await writeSome(node, ['r1', 'r22', 'r3', 'r44'], 5);
    for (const p of ['balances', 'ledger']) {
      expect(await node.projections.waitFor('bank', p, position, 10_000)).toBe(true);
    }
    const liveKv = await kvState(node);
    const livePg = await pgState(prefix);
    for (const p of ['balances', 'ledger']) {
      const { target } = await node.projections.rebuild('bank', p);
      expect(target).toBe(position);
      expect(await node.projections.waitFor('bank', p, target, 10_000)).toBe(true);
    }
    expect(await kvState(node)).toEqual(liveKv);
    expect(await pgState(prefix)).toEqual(livePg);
  });

  it('runs each projection on one node; another stands by, answers queries and takes over', async () => {
    const prefix = uniqueName('px');
    const first = await startNode(prefix);
    const second = await startNode(prefix);
    await waitFor(() =>
      [first, second].some((n) => n.stats().projections['bank.balances']?.state === 'running'),
    );
    const [leader, standby] =
      first.stats().projections['bank.balances']?.state === 'running'
        ? [first, second]
        : [second, first];
    expect(standby.stats().projections['bank.balances']?.state).toBe('standby');
    const position = await writeSome(leader, ['s1', 's2'], 3);
    // The standby waits by reading the stored checkpoint, and reads the shared read model.
    expect(await standby.query(bank, 'balance', { account: 's2' }, { waitFor: position })).toEqual({
      owner: 'owner-0',
      balance: 6,
    });
    await leader.stop();
    await waitFor(() => standby.stats().projections['bank.balances']?.state === 'running');
    await waitFor(() => standby.stats().projections['bank.ledger']?.state === 'running');
    const more = await standby.aggregate(Account, 's1').deposit({ amount: 100 });
    expect(
      await standby.query(bank, 'balance', { account: 's1' }, { waitFor: more.position }),
    ).toEqual({
      owner: 'owner-0',
      balance: 105,
    });
    expect(
      await standby.query(bank, 'owner', { owner: 'owner-0' }, { waitFor: more.position }),
    ).toBe(111);
  });

  it('retries a failing handler, dead-letters the event and waits; a replay after the fix goes on', async () => {
    const prefix = uniqueName('px');
    let fixed = false;
    let calls = 0;
    const picky = defineProjection({
      name: 'picky',
      aggregates: [Account],
      retry: { attempts: 3, backoffMs: 10 },
      on: {
        'Account.Deposited': async (event, { documents }) => {
          if (event.data.amount === 13 && !fixed) {
            calls += 1;
            throw new Error('thirteen is unlucky');
          }
          const sum = ((await documents.get('sum')) as number | undefined) ?? 0;
          await documents.put('sum', sum + event.data.amount);
        },
      },
    });
    const domain = defineDomain({ name: 'bank', aggregates: [Account], projections: [picky] });
    const node = await startNode(prefix, domain);
    await node.aggregate(Account, 'p').open({ owner: 'pat' });
    await node.aggregate(Account, 'p').deposit({ amount: 1 });
    await node.aggregate(Account, 'p').deposit({ amount: 13 });
    const last = await node.aggregate(Account, 'p').deposit({ amount: 2 });
    await waitFor(() => node.stats().projections['bank.picky']?.state === 'blocked');
    expect(calls).toBe(3);
    const letters = await new JetStreamDeadLetterStore({ connection: nc, prefix }).list({
      reactor: 'picky',
    });
    expect(letters).toMatchObject([
      {
        domain: 'bank',
        reactor: 'picky',
        eventType: 'Deposited',
        version: 3,
        attempts: 3,
        policy: 'wait',
        error: { code: 'PROJECTION_HANDLER_FAILED', message: 'thirteen is unlucky' },
      },
    ]);
    expect(node.stats().projections['bank.picky']).toMatchObject({
      blockedBy: letters[0]!.id,
      deadLetters: 1,
    });
    const reader = node.projections.readModel('bank', 'picky') as DocumentReader<number>;
    expect(await reader.get('sum')).toBe(1);
    fixed = true;
    await node.projections.replay(letters[0]!.id);
    expect(await node.projections.waitFor('bank', 'picky', last.position, 5_000)).toBe(true);
    expect(await reader.get('sum')).toBe(16);
    expect(
      await new JetStreamDeadLetterStore({ connection: nc, prefix }).list({ reactor: 'picky' }),
    ).toEqual([]);
  });
});

describe('read-model stores', () => {
  let nc: NatsConnection;
  let pool: pg.Pool;
  const schemas: string[] = [];

  beforeAll(async () => {
    nc = await connectShared();
    pool = await testPool();
  });

  afterAll(async () => {
    await dropSchemas(pool, schemas);
    await pool.end();
    await nc.close();
  });

  const unit = (position: number, amount: number) => ({
    position,
    events: [{ type: 'Deposited', data: { amount }, meta: { version: position } as never }],
  });

  it('KV: a batch interrupted between its redo record and its checkpoint is finished on open, not applied again', async () => {
    const bucket = `${uniqueName('rm')}_kv`;
    const store = new KvReadModelStore<number>({ connection: nc, bucket, fingerprint: 'v1' });
    expect(await store.open()).toBe(0);
    const add = async (
      w: {
        documents: {
          get(k: string): Promise<number | undefined>;
          put(k: string, v: number): Promise<void>;
        };
      },
      amount: number,
    ) => w.documents.put('sum', ((await w.documents.get('sum')) ?? 0) + amount);
    await store.apply([unit(1, 5)], (w) => add(w, 5), { expected: 0, to: 1 });
    // A crash after the redo record of the next batch was written, before any document was:
    const kv = await new Kvm(nc).open(bucket);
    const entry = await kv.get('checkpoint');
    const record = entry!.json<{ position: number; fingerprint: string; marks: number[] }>();
    await kv.update(
      'checkpoint',
      JSON.stringify({
        ...record,
        redo: {
          position: 2,
          marks: [],
          writes: [
            ['sum', '12'],
            ['other', '1'],
          ],
        },
      }),
      entry!.revision,
    );
    const reopened = new KvReadModelStore<number>({ connection: nc, bucket, fingerprint: 'v1' });
    expect(await reopened.open()).toBe(2);
    expect(await reopened.reader().get('sum')).toBe(12);
    expect((await reopened.reader().keys()).sort()).toEqual(['other', 'sum']);
    expect((await kv.get('checkpoint'))!.json()).toEqual({
      position: 2,
      fingerprint: 'v1',
      marks: [],
    });
    // The first store's checkpoint is stale now: it is fenced off.
    const fenced = await rejectionOf(
      store.apply([unit(3, 1)], (w) => add(w, 1), { expected: 1, to: 3 }),
    );
    expect(fenced.code).toBe('PROJECTION_FENCED');
    // Another projection version drops the read model.
    const why: string[] = [];
    const next = new KvReadModelStore<number>({ connection: nc, bucket, fingerprint: 'v2' });
    expect(await next.open((w) => why.push(w))).toBe(0);
    expect(why).toHaveLength(1);
    expect(await next.reader().keys()).toEqual([]);
    await next.drop();
  });

  it('KV: a store that kept its documents in memory reads them again once another writer moved the checkpoint', async () => {
    const bucket = `${uniqueName('rm')}_cache`;
    const add = async (
      w: {
        documents: {
          get(k: string): Promise<number | undefined>;
          put(k: string, v: number): Promise<void>;
        };
      },
      amount: number,
    ) => w.documents.put('sum', ((await w.documents.get('sum')) ?? 0) + amount);
    const first = new KvReadModelStore<number>({ connection: nc, bucket, fingerprint: 'v1' });
    await first.open();
    await first.apply([unit(1, 5)], (w) => add(w, 5), { expected: 0, to: 1 });
    await first.apply([unit(2, 2)], (w) => add(w, 2), { expected: 1, to: 2 });
    // Another node takes over and writes the same document.
    const second = new KvReadModelStore<number>({ connection: nc, bucket, fingerprint: 'v1' });
    expect(await second.open()).toBe(2);
    await second.apply([unit(3, 10)], (w) => add(w, 10), { expected: 2, to: 3 });
    const fenced = await rejectionOf(
      first.apply([unit(4, 1)], (w) => add(w, 1), { expected: 2, to: 4 }),
    );
    expect(fenced.code).toBe('PROJECTION_FENCED');
    // Running it again, the first store starts from the bucket, not from what it remembered.
    expect(await first.open()).toBe(3);
    await first.apply([unit(4, 1)], (w) => add(w, 1), { expected: 3, to: 4 });
    expect(await first.reader().get('sum')).toBe(18);
    await first.close();
    await second.close();
    await first.drop();
  });

  it('KV: writes too big for one record go through redo chunks', async () => {
    const bucket = `${uniqueName('rm')}_big`;
    const store = new KvReadModelStore<string>({ connection: nc, bucket, fingerprint: 'v1' });
    await store.open();
    const big = 'x'.repeat(200_000);
    await store.apply(
      [unit(1, 1)],
      async (w) => {
        for (let i = 0; i < 8; i++) await w.documents.put(`doc-${i}`, big);
      },
      { expected: 0, to: 1 },
    );
    expect((await store.reader().keys()).length).toBe(8);
    expect(await store.checkpoint()).toBe(1);
    await store.drop();
  });

  it('PostgreSQL: rows and checkpoint commit together; a failing handler writes nothing; a second writer is fenced', async () => {
    const schema = uniqueName('rm').toLowerCase();
    schemas.push(schema);
    const make = () =>
      new PostgresReadModelStore({
        pool: { connect: () => pool.connect(), end: () => Promise.resolve() },
        schema,
        migrate: [
          'CREATE TABLE sums (id int PRIMARY KEY, total int NOT NULL)',
          'INSERT INTO sums VALUES (1, 0)',
        ],
        fingerprint: 'v1',
      });
    const store = make();
    expect(await store.open()).toBe(0);
    const add = (amount: number) => async (w: { sql: SqlClient }) => {
      await w.sql.query('UPDATE sums SET total = total + $1', [amount]);
      if (amount < 0) throw new Error('negative');
    };
    await store.apply([unit(1, 5)], add(5), { expected: 0, to: 1 });
    const failed = await store.apply([unit(2, -1)], add(-1), { expected: 1, to: 2 }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failed?.name).toBe('HandlerFailure');
    expect(await store.checkpoint()).toBe(1);
    expect((await store.reader().query<{ total: number }>('SELECT total FROM sums')).rows).toEqual([
      { total: 5 },
    ]);
    const other = make();
    expect(await other.open()).toBe(1);
    await other.apply([unit(2, 2)], add(2), { expected: 1, to: 2 });
    const fenced = await rejectionOf(store.apply([unit(2, 2)], add(2), { expected: 1, to: 2 }));
    expect(fenced.code).toBe('PROJECTION_FENCED');
    expect(await store.apply([unit(2, 3)], add(3), { expected: 2, to: 2, mark: 7 })).toBe(
      'applied',
    );
    expect(await store.apply([unit(2, 3)], add(3), { expected: 2, to: 2, mark: 7 })).toBe(
      'already',
    );
    expect((await store.reader().query<{ total: number }>('SELECT total FROM sums')).rows).toEqual([
      { total: 10 },
    ]);
    // Queries run in read-only transactions.
    await expect(store.reader().query('DELETE FROM sums')).rejects.toMatchObject({ code: '25006' });
  });
});
