import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { createClient } from '../../runtime/index.js';
import {
  natsAuthorization,
  roleUsers,
  userInboxPrefix,
} from '../../runtime/nats/nats-permissions.js';
import { LocalNatsServer, projectNatsConfig } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { runCli } from '../fixtures/run-cli.js';
import { until } from '../fixtures/test-support.js';

const fixture = fileURLToPath(new URL('../fixtures/audited-bank-domain.js', import.meta.url));
const password = `pw-${randomBytes(12).toString('hex')}`;
const marker = `poison-${randomBytes(6).toString('hex')}`;

describe('what the CLI prints on a server with passwords', () => {
  let dir: string;
  let server: LocalNatsServer;
  let node: NodeProcess;
  let nc: NatsConnection;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jetactor-redact-'));
    const users = roleUsers({ domains: [bank] }).map((user) => ({ ...user, password }));
    const config = join(dir, 'nats.conf');
    await writeFile(
      config,
      `${await readFile(projectNatsConfig, 'utf8')}\n${natsAuthorization(users)}`,
    );
    server = await LocalNatsServer.start({ config });
    // The password given the way that is easiest to leak: inside the URL.
    node = await startNodeProcess({
      natsUrl: server.url.replace('nats://', `nats://bank-node:${password}@`),
      prefix: 'jetactor',
      domains: [fixture],
      args: [
        '--inbox-prefix',
        userInboxPrefix('bank-node'),
        '--log-level',
        'debug',
        '--redact-payloads',
      ],
    });
    nc = await connect({
      servers: server.url,
      user: 'client',
      pass: password,
      inboxPrefix: userInboxPrefix('client'),
    });
  });

  afterAll(async () => {
    await nc?.close();
    await node?.stop();
    await killAllNodes();
    await server?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('a node at debug with --redact-payloads never prints the password, nor the payload a dead letter carries', async () => {
    const client = createClient({ connection: nc });
    await client.aggregate(Account, 'r-1', 'bank').open({ owner: marker });
    await client.aggregate(Account, 'r-2', 'bank').open({ owner: 'ann' });
    const refused = await client
      .aggregate(Account, 'r-2', 'bank')
      .withdraw({ amount: 424242 })
      .catch((error: unknown) => error as { code?: string; details?: unknown });
    expect(refused).toMatchObject({ code: 'INSUFFICIENT_FUNDS', details: { amount: 424242 } });
    client.close();
    // The audit reactor refuses the marked owner twice, then dead-letters the event.
    const deadLettered = () =>
      node.logs().find((line) => String(line.msg).startsWith('reactor gave up on the event'));
    await until(() => deadLettered() !== undefined, 15_000);
    await node.stop();

    const printed = `${node.stdout()}\n${node.stderr()}`;
    expect(node.logs().some((line) => line.msg === 'request answered')).toBe(true);
    expect(deadLettered()).toMatchObject({
      err: { code: 'AUDIT_REFUSED', details: '[redacted]' },
    });
    expect(printed).toContain('nats://bank-node:***@127.0.0.1');
    expect(printed).not.toContain(password);
    expect(printed).not.toContain(marker);
    expect(printed).not.toContain('424242');
  });

  it('jetactor dev --nats connects with the user info of the URL and never prints the password', async () => {
    const url = (pass: string) => server.url.replace('nats://', `nats://admin:${pass}@`);
    const dev = await runCli(
      ['dev', 'bank', '--nats', url(password)],
      ['Account d-1 open {"owner":"dev"}', 'quit'],
    );
    expect(dev.code).toBe(0);
    expect(JSON.parse(dev.stdout.split('\n')[0]!)).toMatchObject({ version: 1 });
    expect(dev.stderr).toContain('nats://admin:***@127.0.0.1');
    expect(`${dev.stdout}${dev.stderr}`).not.toContain(password);

    const refused = await runCli(['dev', 'bank', '--nats', url(`wrong-${password}`)], [], {
      endInput: true,
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('CONNECTION_FAILED');
    expect(refused.stderr).not.toContain(password);
  });
});
