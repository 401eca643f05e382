import { fileURLToPath } from 'node:url';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account } from '../../domains/bank/index.js';
import {
  JetStreamDeadLetterStore,
  JetStreamEventStore,
  createNode,
  defineDomain,
  projectionSchema,
  type DomainNode,
} from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { dropSchemas, testDatabaseUrl, testPool } from '../helpers/postgres.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { runCli, jsonLines } from '../fixtures/run-cli.js';
import { silentLogger } from '../fixtures/test-support.js';

const domainModule = fileURLToPath(new URL('../fixtures/projection-domain.js', import.meta.url));

async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('projections killed mid-batch', () => {
  let nc: NatsConnection;
  let pool: pg.Pool;
  const schemas = new Set<string>();

  beforeAll(async () => {
    nc = await connectShared();
    pool = await testPool();
  });

  afterAll(async () => {
    await killAllNodes();
    await dropSchemas(pool, schemas);
    await pool.end();
    await nc.close();
  });

  it('keeps the KV and the PostgreSQL read model consistent across kill -9: no event applied twice', async () => {
    const prefix = uniqueName('pk');
    const schema = projectionSchema(prefix, 'bank', 'ledger');
    schemas.add(schema);
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    // The writer hosts the aggregates only: the projections run in the node processes.
    const writer: DomainNode = createNode({
      domains: [defineDomain({ name: 'bank', aggregates: [Account] })],
      store,
      logger: silentLogger,
    });
    await writer.start();
    const ids = Array.from({ length: 12 }, (_, i) => `k${i}`);
    const deposited = new Map<string, number>(ids.map((id) => [id, 0]));
    let deposits = 0;
    let last = 0;
    const write = async (rounds: number) => {
      for (let round = 1; round <= rounds; round++) {
        const results = await Promise.all(
          ids.map((id) => writer.aggregate(Account, id).deposit({ amount: round })),
        );
        for (const id of ids) deposited.set(id, deposited.get(id)! + round);
        deposits += ids.length;
        last = Math.max(last, ...results.map((r) => r.position));
      }
    };
    for (const id of ids)
      await writer.aggregate(Account, id).open({ owner: `o${Number(id.slice(1)) % 3}` });
    await write(150);

    const kv = () => new Kvm(nc).open(`${prefix}_rm_bank_balances`);
    const kvPosition = async () => {
      const entry = await (await kv()).get('checkpoint').catch(() => null);
      return entry === null ? 0 : entry.json<{ position: number }>().position;
    };
    const pgPosition = async () => {
      try {
        const { rows } = await pool.query<{ position: string }>(
          `SELECT position FROM "${schema}".jetactor_checkpoint`,
        );
        return Number(rows[0]?.position ?? 0);
      } catch {
        return 0;
      }
    };
    const env = { DATABASE_URL: testDatabaseUrl(), PROJECTION_DELAY_MS: '1' };
    const start = (extra: Record<string, string> = {}): Promise<NodeProcess> =>
      startNodeProcess({
        natsUrl: sharedNatsUrl(),
        prefix,
        domains: [domainModule],
        args: ['--lease-time', '1000'],
        env: { ...env, ...extra },
      });

    const first = await start();
    // Killed while both projections are on their way (they are slowed down by 1 ms an event).
    await waitFor(
      async () => (await pgPosition()) > last / 4 && (await kvPosition()) > last / 4,
      20_000,
      'both projections got going',
    );
    first.signal('SIGKILL');
    await first.exited;
    const atKill = { kv: await kvPosition(), pg: await pgPosition(), last };
    expect(atKill.pg, JSON.stringify(atKill)).toBeLessThan(last);
    expect(atKill.kv, JSON.stringify(atKill)).toBeLessThan(last);
    await write(20); // stored while no node runs the projections

    const second = await start({ PROJECTION_DELAY_MS: '0' });
    await waitFor(
      async () => (await kvPosition()) === last && (await pgPosition()) === last,
      30_000,
      `both read models caught up with ${last} (killed at ${JSON.stringify(atKill)})`,
    );

    // KV: every account's balance and every owner's total equal the deposits in the stream.
    const bucket = await kv();
    for (const id of ids) {
      const doc = (
        await bucket.get(`d.=${Buffer.from(`account:${id}`).toString('base64url')}`)
      )?.json<{ balance: number }>();
      expect(doc?.balance, id).toBe(deposited.get(id));
    }
    const byOwner = new Map<string, number>();
    for (const id of ids) {
      const owner = `o${Number(id.slice(1)) % 3}`;
      byOwner.set(owner, (byOwner.get(owner) ?? 0) + deposited.get(id)!);
    }
    // PostgreSQL: each movement once, balances per owner equal the stream's.
    const movements = await pool.query<{ n: string; total: string }>(
      `SELECT count(*) AS n, sum(amount) AS total FROM "${schema}".movements`,
    );
    expect(Number(movements.rows[0]!.n)).toBe(deposits);
    const owners = await pool.query<{ owner: string; balance: string }>(
      `SELECT owner, balance FROM "${schema}".owners ORDER BY owner`,
    );
    expect(owners.rows.map((r) => [r.owner, Number(r.balance)])).toEqual(
      [...byOwner].sort(([a], [b]) => a.localeCompare(b)),
    );
    expect(await new JetStreamDeadLetterStore({ connection: nc, prefix }).list()).toEqual([]);

    // The CLI sees the same: status with no lag, and queries over NATS.
    const connection = ['--nats', sharedNatsUrl(), '--prefix', prefix];
    const status = await runCli(['projection', 'status', ...connection]);
    expect(status.code, status.stderr).toBe(0);
    expect(jsonLines(status)).toMatchObject([
      {
        domain: 'bank',
        projection: 'balances',
        state: 'running',
        position: last,
        lag: 0,
        store: 'kv',
      },
      {
        domain: 'bank',
        projection: 'ledger',
        state: 'running',
        position: last,
        lag: 0,
        store: 'postgres',
      },
    ]);
    const owner = await runCli([
      'query',
      'bank.ownerBalance',
      '{"owner":"o1"}',
      '--wait-for',
      String(last),
      ...connection,
    ]);
    expect(owner.code, owner.stderr).toBe(0);
    expect(jsonLines(owner)).toEqual([byOwner.get('o1')]);
    const account = await runCli([
      'query',
      'bank.accountBalance',
      '{"account":"k4"}',
      ...connection,
    ]);
    expect(jsonLines(account)).toEqual([deposited.get('k4')]);
    await second.stop();
    await writer.stop();
    await store.close();
  }, 60_000);
});
