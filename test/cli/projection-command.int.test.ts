import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { createClient } from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { jsonLines, runCli, type CliRun } from '../fixtures/run-cli.js';

describe('jetactor query and jetactor projection', () => {
  let node: NodeProcess;
  let nc: NatsConnection;
  const prefix = uniqueName('pq');
  const conn = () => ['--nats', sharedNatsUrl(), '--prefix', prefix];
  const cli = (...args: string[]): Promise<CliRun> =>
    runCli([...args, ...conn()], [], { endInput: true, timeoutMs: 20_000 });

  beforeAll(async () => {
    nc = await connectShared();
    node = await startNodeProcess({
      natsUrl: sharedNatsUrl(),
      prefix,
      domains: ['bank'],
      args: ['--node-id', 'pq-node-1'],
    });
  });

  afterAll(async () => {
    await node.stop();
    await killAllNodes();
    await nc.close();
  });

  it('query reads the write send just made, with the position send printed', async () => {
    expect(node.stderr()).toContain(`${prefix}.qry.bank.*   queries: balance, holdings`);
    await cli('send', 'bank.Account.q-1', 'open', '{"owner":"ann"}');
    const sent = await cli('send', 'bank.Account.q-1', 'deposit', '{"amount":42}');
    const [reply] = jsonLines(sent) as { position: number }[];
    expect(reply!.position).toBeGreaterThan(0);
    const read = await cli(
      'query',
      'bank.balance',
      '{"account":"q-1"}',
      '--wait-for',
      String(reply!.position),
    );
    expect(read).toMatchObject({ code: 0, stderr: '' });
    expect(jsonLines(read)).toEqual([{ account: 'q-1', owner: 'ann', balance: 42 }]);
    const holdings = await cli(
      'query',
      'bank.holdings',
      '{"owner":"ann"}',
      '--wait-for',
      String(reply!.position),
    );
    expect(jsonLines(holdings)).toEqual([{ owner: 'ann', total: 42, accounts: ['q-1'] }]);
  });

  it('query reports bad input, unknown queries and a position not reached with their codes', async () => {
    const invalid = await cli('query', 'bank.balance', '{"account":7}');
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain(
      'error VALIDATION_FAILED: Input of query bank.balance is invalid: account:',
    );
    const unknown = await cli('query', 'bank.nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('error UNKNOWN_QUERY');
    expect(unknown.stderr).toContain('balance, holdings');
    const behind = await cli(
      'query',
      'bank.balance',
      '{"account":"q-1"}',
      '--wait-for',
      '999999',
      '--wait-timeout',
      '200',
    );
    expect(behind.code).toBe(1);
    expect(behind.stderr).toContain('error PROJECTION_BEHIND');
    const usage = await cli('query', 'bank');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('is not <domain>.<query>');
    const none = await runCli(
      ['query', 'shop.list', '--nats', sharedNatsUrl(), '--prefix', prefix, '--retries', '0'],
      [],
      {
        endInput: true,
      },
    );
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('error NO_RESPONDERS');
  });

  it('projection status prints the lag of each projection; the NATS service stats carry it too', async () => {
    const last = await cli('send', 'bank.Account.s-1', 'open', '{"owner":"sam"}');
    const [{ position }] = jsonLines(last) as [{ position: number }];
    await cli('query', 'bank.balance', '{"account":"s-1"}', '--wait-for', String(position));
    const status = await cli('projection', 'status');
    expect(status.code, status.stderr).toBe(0);
    expect(jsonLines(status)).toMatchObject([
      {
        domain: 'bank',
        projection: 'balances',
        state: 'running',
        // --node-id names the node in projection and reactor leases too, not only in partitions.
        node: 'pq-node-1',
        store: 'kv',
        location: `KV bucket ${prefix}_rm_bank_balances`,
        position,
        lag: 0,
      },
    ]);
    expect((await cli('projection', 'status', '--domain', 'shop')).code).toBe(1);
    const stats = await nc.request(`$SRV.STATS.${prefix}`, '', { timeout: 2_000 });
    const body = JSON.parse(new TextDecoder().decode(stats.data)) as {
      endpoints: {
        name: string;
        data: { actors?: { projections: unknown }; projections?: unknown };
      }[];
    };
    const query = body.endpoints.find((e) => e.name === 'qry-bank');
    expect(query?.data.projections).toMatchObject({ 'bank.balances': { position, lag: 0 } });
    expect(body.endpoints[0]?.data.actors?.projections).toMatchObject({
      'bank.balances': { lag: 0 },
    });
  });

  it('projection rebuild drops the read model, shows its progress and ends with the same state', async () => {
    const client = createClient({ connection: nc, prefix, domains: [bank] });
    let last = 0;
    for (const id of ['r-0', 'r-1', 'r-2']) {
      await client.aggregate(Account, id).open({ owner: 'rae' });
      for (let amount = 1; amount <= 10; amount++) {
        last = (await client.aggregate(Account, id).deposit({ amount })).position;
      }
    }
    client.close();
    const before = await cli(
      'query',
      'bank.holdings',
      '{"owner":"rae"}',
      '--wait-for',
      String(last),
    );
    expect(jsonLines(before)).toEqual([
      { owner: 'rae', total: 165, accounts: ['r-0', 'r-1', 'r-2'] },
    ]);
    const rebuilt = await cli('projection', 'rebuild', 'bank.balances');
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(rebuilt.stderr).toContain('rebuilding bank.balances [');
    expect(rebuilt.stderr).toContain('100%');
    const [done] = jsonLines(rebuilt) as { position: number; target: number; state: string }[];
    expect(done!.position).toBeGreaterThanOrEqual(done!.target);
    const after = await cli(
      'query',
      'bank.holdings',
      '{"owner":"rae"}',
      '--wait-for',
      String(done!.target),
    );
    expect(jsonLines(after)).toEqual(jsonLines(before));
    const missing = await cli('projection', 'rebuild', 'bank.nope', '--timeout', '500');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('error PROJECTION_UNAVAILABLE');
    expect((await cli('projection', 'rebuild')).code).toBe(2);
  });
});
