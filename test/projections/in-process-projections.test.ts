import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Account } from '../../domains/bank/index.js';
import {
  DomainError,
  createNode,
  defineDomain,
  defineProjection,
  defineQuery,
  isRejectionError,
  kvReadModel,
} from '../../runtime/index.js';
import { rejectionOf, silentLogger, until } from '../fixtures/test-support.js';

const totals = defineProjection({
  name: 'totals',
  aggregates: [Account],
  store: kvReadModel({ document: z.object({ owner: z.string(), balance: z.number() }) }),
  on: {
    'Account.Opened': async (event, { documents }) => {
      await documents.put(event.meta.aggregateId, { owner: event.data.owner, balance: 0 });
    },
    'Account.Deposited': async (event, { documents }) => {
      const doc = await documents.get(event.meta.aggregateId);
      if (doc === undefined) throw new Error('no account');
      await documents.put(event.meta.aggregateId, {
        ...doc,
        balance: doc.balance + event.data.amount,
      });
    },
  },
});

const total = defineQuery({
  name: 'total',
  input: z.object({ id: z.string().min(1) }),
  handler: async ({ id }, ctx) => (await ctx.readModel(totals).get(id))?.balance ?? null,
});

const everyone = defineQuery({
  name: 'everyone',
  input: z.object({}),
  handler: async (_input, ctx) =>
    (await ctx.readModel(totals).list()).map((e) => `${e.key}:${e.document.balance}`).sort(),
});

const bank = defineDomain({
  name: 'bank',
  aggregates: [Account],
  projections: [totals],
  queries: [total, everyone],
});

describe('projections in process', () => {
  it('builds a read model from the events and answers typed queries that wait for a position', async () => {
    const node = createNode({ domains: [bank], logger: silentLogger });
    await node.start();
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    const deposit = await node.aggregate(Account, 'a').deposit({ amount: 5 });
    expect(deposit.position).toBe(2);
    const balance: number | null = await node.query(
      bank,
      'total',
      { id: 'a' },
      { waitFor: deposit.position },
    );
    expect(balance).toBe(5);
    await node.aggregate(Account, 'b').open({ owner: 'bob' });
    const last = await node.aggregate(Account, 'b').deposit({ amount: 7 });
    expect(await node.query(bank, 'everyone', {}, { waitFor: last.position })).toEqual([
      'a:5',
      'b:7',
    ]);
    expect(node.stats().projections['bank.totals']).toMatchObject({
      state: 'running',
      store: 'memory',
      position: 4,
      lag: 0,
      applied: 4,
    });
    await node.stop();
  });

  it('refuses unknown queries and invalid input with typed rejections', async () => {
    const node = createNode({ domains: [bank], logger: silentLogger });
    await node.start();
    const unknown = await rejectionOf(node.query('bank', 'nope', {}));
    expect(unknown.code).toBe('UNKNOWN_QUERY');
    expect(unknown.details).toMatchObject({ known: ['total', 'everyone'] });
    const invalid = await rejectionOf(node.query('bank', 'total', { id: 3 }));
    expect(invalid.code).toBe('VALIDATION_FAILED');
    expect(isRejectionError(invalid)).toBe(true);
    expect(invalid.message).toContain('id');
    await node.stop();
  });

  it('answers PROJECTION_BEHIND when waitFor is not reached in time', async () => {
    const node = createNode({ domains: [bank], logger: silentLogger });
    await node.start();
    const behind = await rejectionOf(
      node.query(bank, 'total', { id: 'x' }, { waitFor: 99, waitTimeoutMs: 50 }),
    );
    expect(behind.code).toBe('PROJECTION_BEHIND');
    expect(behind.retryable).toBe(true);
    expect(behind.details).toMatchObject({ projection: 'totals', waitFor: 99 });
    await node.stop();
  });

  it('retries a failing handler, then dead-letters the event and (skip) goes on without it', async () => {
    let failures = 0;
    const fragile = defineProjection({
      name: 'fragile',
      aggregates: [Account],
      retry: { attempts: 3, backoffMs: 1 },
      deadLetters: 'skip',
      on: {
        'Account.Deposited': async (event, { documents }) => {
          if (event.data.amount === 13) {
            failures += 1;
            throw new DomainError('UNLUCKY', 'thirteen');
          }
          const seen = ((await documents.get('sum')) as number | undefined) ?? 0;
          await documents.put('sum', seen + event.data.amount);
        },
      },
    });
    const domain = defineDomain({ name: 'bank', aggregates: [Account], projections: [fragile] });
    const node = createNode({ domains: [domain], logger: silentLogger });
    await node.start();
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await node.aggregate(Account, 'a').deposit({ amount: 1 });
    await node.aggregate(Account, 'a').deposit({ amount: 13 });
    const last = await node.aggregate(Account, 'a').deposit({ amount: 2 });
    expect(await node.projections.waitFor('bank', 'fragile', last.position, 2_000)).toBe(true);
    expect(failures).toBe(3);
    const reader = node.projections.readModel('bank', 'fragile') as {
      get(k: string): Promise<unknown>;
    };
    expect(await reader.get('sum')).toBe(3);
    const [letter] = await node.projections.deadLetters();
    expect(letter).toMatchObject({
      reactor: 'fragile',
      eventType: 'Deposited',
      attempts: 3,
      policy: 'skip',
      error: { code: 'UNLUCKY' },
    });
    expect(node.stats().projections['bank.fragile']).toMatchObject({ retries: 2, deadLetters: 1 });
    await node.stop();
  });

  it('halts behind a dead letter (wait) until it is replayed, then applies it in order', async () => {
    let broken = true;
    const strict = defineProjection({
      name: 'strict',
      aggregates: [Account],
      retry: { attempts: 2, backoffMs: 1 },
      on: {
        'Account.Deposited': async (event, { documents }) => {
          if (broken && event.data.amount === 13) throw new Error('broken');
          const order = ((await documents.get('order')) as number[] | undefined) ?? [];
          await documents.put('order', [...order, event.data.amount]);
        },
      },
    });
    const domain = defineDomain({ name: 'bank', aggregates: [Account], projections: [strict] });
    const node = createNode({ domains: [domain], logger: silentLogger });
    await node.start();
    await node.aggregate(Account, 'a').open({ owner: 'ann' });
    await node.aggregate(Account, 'a').deposit({ amount: 1 });
    await node.aggregate(Account, 'a').deposit({ amount: 13 });
    const last = await node.aggregate(Account, 'a').deposit({ amount: 2 });
    await until(() => node.stats().projections['bank.strict']?.state === 'blocked');
    expect(await node.projections.waitFor('bank', 'strict', last.position, 50)).toBe(false);
    const reader = node.projections.readModel('bank', 'strict') as {
      get(k: string): Promise<unknown>;
    };
    expect(await reader.get('order')).toEqual([1]);
    const [letter] = await node.projections.deadLetters();
    expect(letter).toMatchObject({
      policy: 'wait',
      sequence: 3,
      error: { code: 'PROJECTION_HANDLER_FAILED' },
    });
    broken = false;
    await node.projections.replay(letter!.id);
    expect(await node.projections.waitFor('bank', 'strict', last.position, 2_000)).toBe(true);
    expect(await reader.get('order')).toEqual([1, 13, 2]);
    expect(await node.projections.deadLetters()).toEqual([]);
    await node.stop();
  });

  it('rebuilds the read model from the start of the stream to the same result', async () => {
    const node = createNode({ domains: [bank], logger: silentLogger });
    await node.start();
    for (const id of ['a', 'b', 'c']) {
      await node.aggregate(Account, id).open({ owner: id });
      await node.aggregate(Account, id).deposit({ amount: id.charCodeAt(0) });
    }
    const before = await node.query(bank, 'everyone', {}, { waitFor: 6 });
    const { target } = await node.projections.rebuild('bank', 'totals');
    expect(target).toBe(6);
    expect(await node.query(bank, 'everyone', {}, { waitFor: target })).toEqual(before);
    await node.stop();
  });
});
