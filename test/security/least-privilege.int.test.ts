import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, nkeyAuthenticator, nkeys, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, Transfer, bank } from '../../domains/bank/index.js';
import { flight } from '../../domains/flight/index.js';
import { JetStreamEventStore } from '../../runtime/event-store/jetstream-event-store.js';
import { PartitionLeases, createClient } from '../../runtime/index.js';
import { openLeaseBucket } from '../../runtime/nats/kv-lease.js';
import {
  natsAuthorization,
  roleUsers,
  userInboxPrefix,
} from '../../runtime/nats/nats-permissions.js';
import {
  permissionViolationOf,
  type PermissionViolation,
} from '../../runtime/nats/permission-denied.js';
import { LocalNatsServer, projectNatsConfig } from '../helpers/nats.js';
import {
  killAllNodes,
  spawnNode,
  startNodeProcess,
  type NodeProcess,
} from '../fixtures/node-process.js';
import { runCli } from '../fixtures/run-cli.js';
import { rejectionOf, silentLogger, until } from '../fixtures/test-support.js';

const prefix = 'jetactor';
const secret = () => randomBytes(12).toString('hex');
const passwords = {
  admin: secret(),
  client: secret(),
  'flight-node': secret(),
  'bank-node-no-leases': secret(),
  'bank-node-no-rm-leases': secret(),
};
const clientInbox = userInboxPrefix('client');
const nodeInbox = userInboxPrefix('bank-node');
const secureConf = fileURLToPath(new URL('../../docs/nats-secure.conf', import.meta.url));

/** Every permission violation the server reports to a connection, as they come. */
function violationsOf(nc: NatsConnection): PermissionViolation[] {
  const seen: PermissionViolation[] = [];
  void (async () => {
    for await (const status of nc.status()) {
      const violation = permissionViolationOf((status as { error?: unknown }).error);
      if (violation !== undefined) seen.push(violation);
    }
  })();
  return seen;
}

/** Reads until `done` holds; fails after `timeoutMs`. */
async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function refusal(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => new Error('expected a refusal, but it succeeded'),
    (error: unknown) => error,
  );
}

describe('least privilege on NATS', () => {
  let dir: string;
  let server: LocalNatsServer;
  let seedFile: string;
  let admin: NatsConnection;
  let node: NodeProcess;
  const nodeArgs = () => ['--nkey', seedFile, '--inbox-prefix', nodeInbox];
  const asClient = ['--user', 'client', '--password', passwords.client];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jetactor-lp-'));
    // The documented roles, with the bank node as an nkey user and literal passwords.
    const bankNode = nkeys.createUser();
    seedFile = join(dir, 'bank-node.nk');
    await writeFile(seedFile, `${new TextDecoder().decode(bankNode.getSeed())}\n`, { mode: 0o600 });
    const users = roleUsers({ prefix, domains: [bank, flight] }).map((user) =>
      user.user === 'bank-node'
        ? { ...user, user: undefined, password: undefined, nkey: bankNode.getPublicKey() }
        : { ...user, password: passwords[user.user as keyof typeof passwords] },
    );
    // Two bank node users that lack one thing each: the partition lease bucket, and the lease
    // bucket of reactors and projections.
    const bankNodeUser = users.find((user) => user.nkey !== undefined)!;
    const without = (user: string, part: string) => ({
      user,
      password: passwords[user as keyof typeof passwords],
      permissions: {
        ...bankNodeUser.permissions!,
        publish: bankNodeUser.permissions!.publish.filter((subject) => !subject.includes(part)),
        subscribe: [
          ...bankNodeUser.permissions!.subscribe.filter((subject) => !subject.startsWith('_INBOX')),
          `${userInboxPrefix(user)}.>`,
        ],
      },
    });
    users.push(
      without('bank-node-no-leases', 'leases_bank'),
      without('bank-node-no-rm-leases', '_rm_leases'),
    );
    const config = join(dir, 'nats.conf');
    await writeFile(
      config,
      `${await readFile(projectNatsConfig, 'utf8')}\n${natsAuthorization(users)}`,
    );
    server = await LocalNatsServer.start({ config, logLines: 5_000 });
    admin = await connect({ servers: server.url, user: 'admin', pass: passwords.admin });
    node = await startNodeProcess({ natsUrl: server.url, prefix, args: nodeArgs() });
  });

  afterAll(async () => {
    await node?.stop();
    await killAllNodes();
    await admin?.close();
    await server?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('validates docs/nats-secure.conf with nats-server 2.9', async () => {
    const env = {
      ...process.env,
      NATS_ADMIN_PASSWORD: 'a',
      NATS_CLIENT_PASSWORD: 'b',
      NATS_BANK_NODE_PASSWORD: 'c',
      NATS_FLIGHT_NODE_PASSWORD: 'd',
    };
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(server.binary, ['-c', secureConf, '-t'], { env }, (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : 1, out: `${stdout}${stderr}` }),
      );
    });
    expect(result).toEqual({ code: 0, out: expect.stringContaining('is valid') });
  });

  it('a bank node on its nkey serves what a client user sends, without one permission violation', async () => {
    const cli = await runCli(
      [
        'send',
        'bank.Account.lp-1',
        'open',
        '{"owner":"ann"}',
        '--nats',
        server.url,
        ...asClient,
        '--inbox-prefix',
        clientInbox,
      ],
      [],
      { endInput: true, timeoutMs: 15_000 },
    );
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);

    const nc = await connect({
      servers: server.url,
      user: 'client',
      pass: passwords.client,
      inboxPrefix: clientInbox,
    });
    try {
      const client = createClient({ connection: nc, prefix });
      await client.aggregate(Account, 'lp-2', 'bank').open({ owner: 'bob' });
      // Past snapshotEvery (100): the node writes a snapshot into its bucket.
      const account = client.aggregate(Account, 'lp-1', 'bank');
      for (let round = 0; round < 11; round++) {
        await Promise.all(Array.from({ length: 10 }, () => account.deposit({ amount: 1 })));
      }
      // The transfers reactor, the balances projection and its lease, the partition leases.
      await client
        .aggregate(Transfer, 'lp-t1', 'bank')
        .request({ from: 'lp-1', to: 'lp-2', amount: 5 });
      const balance = await eventually(
        () => client.query(bank, 'balance', { account: 'lp-2' }),
        (found) => found?.balance === 5,
      );
      expect(balance).toMatchObject({ account: 'lp-2', balance: 5 });
      const view = await client.view('Account', 'lp-1', 'bank');
      expect(view.context).toMatchObject({ balance: 105 });
      client.close();
    } finally {
      await nc.close();
    }
    const snapshots = await new Kvm(admin).open('jetactor_snapshots_bank');
    const snapshot = await eventually(
      () => snapshots.get('Account.lp-1'),
      (entry) => entry !== null,
    );
    expect(snapshot?.operation).toBe('PUT');
    expect(
      server
        .log()
        .split('\n')
        .filter((line) => /Violation/.test(line)),
    ).toEqual([]);
  });

  it('refuses a client publishing events, reading, purging or deleting the stream, and writing a bucket', async () => {
    const nc = await connect({
      servers: server.url,
      user: 'client',
      pass: passwords.client,
      inboxPrefix: clientInbox,
    });
    const violations = violationsOf(nc);
    const adminJsm = await jetstreamManager(admin);
    const before = (await adminJsm.streams.info('jetactor_bank')).state.last_seq;
    const leasesBefore = (await adminJsm.streams.info('KV_jetactor_leases_bank')).state.last_seq;
    try {
      nc.publish('jetactor.evt.bank.Account.lp-1', new TextEncoder().encode('forged'));
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      // Opening binds without asking the server; each operation is refused.
      const kv = await new Kvm(nc).open('jetactor_leases_bank');
      const refused = [
        await refusal(jsm.streams.info('jetactor_bank')),
        await refusal(jsm.streams.getMessage('jetactor_bank', { seq: 1 })),
        await refusal(jsm.direct.getMessage('jetactor_bank', { seq: 1 })),
        await refusal(jsm.streams.purge('jetactor_bank')),
        await refusal(jsm.streams.delete('jetactor_bank')),
        await refusal(kv.put('partition.0', 'forged')),
        await refusal(kv.get('partition.0')),
        await refusal(new Kvm(nc).create('jetactor_forged')),
      ];
      expect(refused.map((e) => permissionViolationOf(e)?.subject ?? String(e))).toEqual([
        '$JS.API.STREAM.INFO.jetactor_bank',
        '$JS.API.STREAM.MSG.GET.jetactor_bank',
        '$JS.API.DIRECT.GET.jetactor_bank',
        '$JS.API.STREAM.PURGE.jetactor_bank',
        '$JS.API.STREAM.DELETE.jetactor_bank',
        '$KV.jetactor_leases_bank.partition.0',
        '$JS.API.STREAM.MSG.GET.KV_jetactor_leases_bank',
        // Creating a bucket needs JetStream first.
        '$JS.API.INFO',
      ]);
      // Nor may it listen in on commands or on other users' replies.
      nc.subscribe('jetactor.cmd.bank.>');
      nc.subscribe('_INBOX.>');
      const seen = () => violations.map((v) => `${v.operation} ${v.subject}`);
      await until(() => seen().filter((v) => v.startsWith('subscription')).length === 2, 5_000);
      expect(seen()).toEqual(
        expect.arrayContaining([
          'publish jetactor.evt.bank.Account.lp-1',
          'subscription jetactor.cmd.bank.>',
          'subscription _INBOX.>',
        ]),
      );
    } finally {
      await nc.close();
    }
    expect((await adminJsm.streams.info('jetactor_bank')).state.last_seq).toBe(before);
    expect((await adminJsm.streams.info('KV_jetactor_leases_bank')).state.last_seq).toBe(
      leasesBefore,
    );

    const events = await runCli(
      ['events', 'bank', '--nats', server.url, ...asClient, '--inbox-prefix', clientInbox],
      [],
      { endInput: true, timeoutMs: 15_000 },
    );
    expect(events.code).toBe(2);
    expect(events.stderr).toContain('PERMISSION_DENIED');
    expect(events.stderr).toContain('"$JS.API.INFO"');
    const deadLetters = await runCli(
      ['deadletters', 'list', '--nats', server.url, ...asClient, '--inbox-prefix', clientInbox],
      [],
      { endInput: true, timeoutMs: 15_000 },
    );
    expect(deadLetters.code).toBe(2);
    expect(deadLetters.stderr).toContain('PERMISSION_DENIED');
    expect(deadLetters.stderr).toContain('"$JS.API.INFO"');
  });

  it('refuses a bank node writing the flight stream, hosting flight, or purging its own stream', async () => {
    const adminStore = await JetStreamEventStore.open({ connection: admin, prefix });
    await adminStore.ensureDomains(['flight']);
    await adminStore.close();
    const seed = (await readFile(seedFile, 'utf8')).trim();
    const nc = await connect({
      servers: server.url,
      authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
      inboxPrefix: nodeInbox,
    });
    const violations = violationsOf(nc);
    try {
      nc.publish('jetactor.evt.flight.Aircraft.x-1', new TextEncoder().encode('forged'));
      const store = await JetStreamEventStore.open({ connection: nc, prefix });
      const error = await rejectionOf(
        store.append({
          stream: { domain: 'flight', aggregate: 'Aircraft', id: 'x-1' },
          expectedPosition: 0,
          dedupId: 'forged-1',
          events: [],
          commands: [],
        }),
      );
      expect(error.code).toBe('PERMISSION_DENIED');
      expect(error.message).toContain('"$JS.API.STREAM.INFO.jetactor_flight"');
      await store.close();
      const jsm = await jetstreamManager(nc);
      const purge = await refusal(jsm.streams.purge('jetactor_bank'));
      expect(permissionViolationOf(purge)?.subject).toBe('$JS.API.STREAM.PURGE.jetactor_bank');
      await until(() => violations.some((v) => v.subject === 'jetactor.evt.flight.Aircraft.x-1'));
    } finally {
      await nc.close();
    }
    const adminJsm = await jetstreamManager(admin);
    expect((await adminJsm.streams.info('jetactor_flight')).state.messages).toBe(0);

    const hostFlight = spawnNode([
      'flight',
      '--nats',
      server.url,
      '--prefix',
      prefix,
      ...nodeArgs(),
    ]);
    expect((await hostFlight.exited).code).toBe(2);
    expect(hostFlight.stderr()).toContain('PERMISSION_DENIED');
    expect(hostFlight.stderr()).toContain('"$JS.API.STREAM.INFO.jetactor_flight"');

    const noInbox = spawnNode([
      'bank',
      '--nats',
      server.url,
      '--prefix',
      prefix,
      '--nkey',
      seedFile,
    ]);
    expect((await noInbox.exited).code).toBe(2);
    expect(noInbox.stderr()).toContain('PERMISSION_DENIED');
    expect(noInbox.stderr()).toContain('--inbox-prefix');
  });

  it('a node whose user may not use a lease bucket exits 2 with PERMISSION_DENIED naming its subject, not as if JetStream were down', async () => {
    for (const [user, bucket] of [
      ['bank-node-no-leases', 'KV_jetactor_leases_bank'],
      ['bank-node-no-rm-leases', 'KV_jetactor_rm_leases'],
    ] as const) {
      const refused = spawnNode([
        'bank',
        '--nats',
        server.url,
        '--prefix',
        prefix,
        '--user',
        user,
        '--password',
        passwords[user],
        '--inbox-prefix',
        userInboxPrefix(user),
      ]);
      const exit = await refused.exited;
      expect(exit.code, refused.stderr()).toBe(2);
      expect(refused.stderr()).toContain('PERMISSION_DENIED');
      expect(refused.stderr()).toContain(bucket);
      expect(refused.stderr()).toContain('jetactor permissions');
      expect(refused.stderr()).not.toContain('did not answer');
    }
  });

  it('the lease APIs reject a user without the bucket with PERMISSION_DENIED naming what was refused', async () => {
    const as = (user: 'bank-node-no-leases' | 'bank-node-no-rm-leases') =>
      connect({
        servers: server.url,
        user,
        pass: passwords[user],
        inboxPrefix: userInboxPrefix(user),
      });
    const noLeases = await as('bank-node-no-leases');
    const noRmLeases = await as('bank-node-no-rm-leases');
    try {
      const leases = new PartitionLeases({ connection: noLeases, domain: 'bank', prefix });
      const refused = await rejectionOf(leases.start());
      expect(refused.code).toBe('PERMISSION_DENIED');
      expect(refused.message).toContain('lease bucket jetactor_leases_bank');
      expect(refused.message).toContain('"$JS.API.STREAM.INFO.KV_jetactor_leases_bank"');

      const bucket = await rejectionOf(openLeaseBucket(noRmLeases, prefix, 5_000, silentLogger));
      expect(bucket.code).toBe('PERMISSION_DENIED');
      expect(bucket.message).toContain('the lease bucket jetactor_rm_leases');
    } finally {
      await noLeases.close();
      await noRmLeases.close();
    }
  });
});
