import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect, type TlsOptions } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account } from '../../domains/bank/index.js';
import { createClient } from '../../runtime/index.js';
import { LocalNatsServer, projectNatsConfig, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { runCli, type CliRun } from '../fixtures/run-cli.js';

const run = promisify(execFile);

/**
 * A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl (EC P-256
 * keys: quick to generate), valid for a day.
 */
async function makeCertificates(dir: string): Promise<Record<string, string>> {
  const files = {
    ca: join(dir, 'ca.pem'),
    caKey: join(dir, 'ca-key.pem'),
    serverCert: join(dir, 'server-cert.pem'),
    serverKey: join(dir, 'server-key.pem'),
    clientCert: join(dir, 'client-cert.pem'),
    clientKey: join(dir, 'client-key.pem'),
  };
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...key,
    '-keyout',
    files.caKey,
    '-out',
    files.ca,
    '-days',
    '1',
    '-subj',
    '/CN=jetactor test CA',
  ]);
  for (const [name, cert, certKey, ext] of [
    [
      'server',
      files.serverCert,
      files.serverKey,
      'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
    ],
    ['client', files.clientCert, files.clientKey, 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    const csr = join(dir, `${name}.csr`);
    const extFile = join(dir, `${name}.ext`);
    await writeFile(extFile, ext);
    await run('openssl', [
      'req',
      ...key,
      '-keyout',
      certKey,
      '-out',
      csr,
      '-subj',
      `/CN=jetactor ${name}`,
    ]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      files.ca,
      '-CAkey',
      files.caKey,
      '-CAcreateserial',
      '-out',
      cert,
      '-days',
      '1',
      '-extfile',
      extFile,
    ]);
  }
  return files;
}

async function tlsServer(
  dir: string,
  certs: Record<string, string>,
  verify: boolean,
): Promise<LocalNatsServer> {
  const config = join(dir, `nats-${verify ? 'mtls' : 'tls'}.conf`);
  await writeFile(
    config,
    `${await readFile(projectNatsConfig, 'utf8')}
tls {
  cert_file: ${JSON.stringify(certs.serverCert)}
  key_file: ${JSON.stringify(certs.serverKey)}
  ca_file: ${JSON.stringify(certs.ca)}
  verify: ${verify}
  timeout: 2
}
`,
  );
  return LocalNatsServer.start({ config });
}

function send(url: string, prefix: string, id: string, ...flags: string[]): Promise<CliRun> {
  return runCli(
    [
      'send',
      `bank.Account.${id}`,
      'open',
      '{"owner":"ann"}',
      '--nats',
      url,
      '--prefix',
      prefix,
      '--retries',
      '0',
      ...flags,
    ],
    [],
    { endInput: true, timeoutMs: 15_000 },
  );
}

describe('TLS between clients and nats-server', () => {
  const prefix = uniqueName('tls');
  let dir: string;
  let certs: Record<string, string>;
  let tls: LocalNatsServer;
  let mtls: LocalNatsServer;
  let node: NodeProcess;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jetactor-tls-'));
    certs = await makeCertificates(dir);
    [tls, mtls] = await Promise.all([tlsServer(dir, certs, false), tlsServer(dir, certs, true)]);
    node = await startNodeProcess({
      natsUrl: tls.url,
      prefix,
      args: ['--tls-ca', certs.ca!],
    });
  });

  afterAll(async () => {
    await node?.stop();
    await killAllNodes();
    await Promise.all([tls?.cleanup(), mtls?.cleanup()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('a node and jetactor send trust the server with --tls-ca; without it send exits 1 saying so', async () => {
    const ok = await send(tls.url, prefix, 'tls-1', '--tls-ca', certs.ca!);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ version: 1 });

    const untrusted = await send(tls.url, prefix, 'tls-2');
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain('CONNECTION_FAILED');
    expect(untrusted.stderr).toContain('unable to verify the first certificate');
    expect(untrusted.stderr).toContain('--tls-ca');
  });

  it('a client made with createClient runs on a TLS connection its caller opens', async () => {
    // host: the address to check the certificate against when the URL holds an IP address
    // (nats.js hands Node's TLS none, and Node then checks "localhost").
    const options: TlsOptions & { host: string } = { caFile: certs.ca!, host: '127.0.0.1' };
    const nc = await connect({ servers: tls.url, tls: options });
    try {
      const client = createClient({ connection: nc, prefix });
      const result = await client.aggregate(Account, 'tls-3', 'bank').open({ owner: 'bob' });
      expect(result.version).toBe(1);
      expect(nc.info?.tls_required).toBe(true);
      client.close();
    } finally {
      await nc.close();
    }
  });

  it('a server that verifies clients takes one with --tls-cert and --tls-key and drops one without', async () => {
    // No node runs on this server: getting as far as NO_RESPONDERS means the handshake passed.
    const withCert = await send(
      mtls.url,
      prefix,
      'tls-4',
      '--tls-ca',
      certs.ca!,
      '--tls-cert',
      certs.clientCert!,
      '--tls-key',
      certs.clientKey!,
    );
    expect(withCert.code).toBe(1);
    expect(withCert.stderr).toContain('NO_RESPONDERS');

    const withoutCert = await send(mtls.url, prefix, 'tls-5', '--tls-ca', certs.ca!);
    expect(withoutCert.code).toBe(1);
    expect(withoutCert.stderr).toContain('CONNECTION_FAILED');
    expect(withoutCert.stderr).toContain('--tls-cert');
  });

  it('a tls:// URL requires TLS: send to a server without TLS exits 1 saying so, as with --tls-ca', async () => {
    const plain = sharedNatsUrl();
    for (const [url, flags] of [
      [plain.replace('nats://', 'tls://'), []],
      [plain, ['--tls-ca', certs.ca!]],
    ] as const) {
      const run = await send(url, prefix, 'tls-6', ...flags);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('CONNECTION_FAILED');
      expect(run.stderr).toContain('does not offer TLS');
    }
  });
});
