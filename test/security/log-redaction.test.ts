import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  connectNats,
  urlCredentials,
  connectionFields,
  connectionSchema,
  resolveConfig,
} from '../../runtime/cli/connection-config.js';
import { DomainError, InfrastructureError, isJetactorError } from '../../runtime/errors.js';
import { createLogger, REDACTED, type LoggerOptions } from '../../runtime/logger.js';

const secret = 'hunter2-s3cret';

/** A logger writing to an array, as the tests' captureLogger does, built by createLogger. */
function captured(options: Omit<LoggerOptions, 'destination'> = {}) {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'debug',
    ...options,
    destination: { write: (line: string) => lines.push(line) },
  });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, any>) };
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected it to fail');
    },
    (error: unknown) => error as Error,
  );
}

describe('nothing secret in logs', () => {
  const savedEnv = process.env.JETACTOR_REDACT_PAYLOADS;
  afterEach(() => {
    if (savedEnv === undefined) delete process.env.JETACTOR_REDACT_PAYLOADS;
    else process.env.JETACTOR_REDACT_PAYLOADS = savedEnv;
  });

  it('masks passwords, nkey seeds and tokens of connection options, wherever they sit', () => {
    const { logger, lines, records } = captured();
    logger.info(
      {
        password: secret,
        seed: secret,
        options: { user: 'client', pass: secret, token: secret, nkey: secret },
        connection: { options: { password: secret } },
      },
      'connecting',
    );
    expect(lines.join('')).not.toContain(secret);
    expect(records()[0]).toMatchObject({
      password: REDACTED,
      seed: REDACTED,
      options: { user: 'client', pass: REDACTED, token: REDACTED, nkey: REDACTED },
      connection: { options: { password: REDACTED } },
    });
  });

  it('redacts error details and data fields when asked, and keeps them otherwise', () => {
    const refused = new DomainError('INSUFFICIENT_FUNDS', 'Cannot withdraw', { amount: 987654 });
    const entry = {
      err: refused,
      input: { owner: 'ann-987654' },
      nested: { data: { iban: 'XX987654' } },
      subject: 'jetactor.cmd.bank.Account.a-1.withdraw',
    };
    const plain = captured();
    plain.logger.error(entry, 'refused');
    expect(plain.lines.join('')).toContain('987654');

    const redacted = captured({ redactPayloads: true });
    redacted.logger.error(entry, 'refused');
    expect(redacted.lines.join('')).not.toContain('987654');
    expect(redacted.records()[0]).toMatchObject({
      err: { message: 'Cannot withdraw', code: 'INSUFFICIENT_FUNDS', details: REDACTED },
      input: REDACTED,
      nested: { data: REDACTED },
      subject: 'jetactor.cmd.bank.Account.a-1.withdraw',
      msg: 'refused',
    });
  });

  it('redacts payloads by default when JETACTOR_REDACT_PAYLOADS is set', () => {
    process.env.JETACTOR_REDACT_PAYLOADS = '1';
    const { logger, lines } = captured();
    logger.warn({ err: new InfrastructureError('CORRUPT_DATA', 'bad', { details: { x: 'XYZ' } }) });
    expect(lines.join('')).not.toContain('XYZ');
  });

  it('shows no password in connection and configuration errors', async () => {
    const config = await resolveConfig(
      connectionSchema,
      connectionFields,
      { nats: `nats://client:${secret}@127.0.0.1:1` },
      {},
    );
    const refused = await failure(connectNats(config, 'test'));
    expect(isJetactorError(refused) && refused.code).toBe('CONNECTION_FAILED');
    expect(refused.message).toContain('nats://client:***@127.0.0.1:1');
    expect(refused.message).not.toContain(secret);

    const badUrl = await failure(
      resolveConfig(connectionSchema, connectionFields, { nats: `nats://client:${secret}@` }, {}),
    );
    expect(badUrl.message).toContain('client:***@');
    expect(badUrl.message).not.toContain(secret);

    const dir = await mkdtemp(join(tmpdir(), 'jetactor-redaction-'));
    try {
      const file = join(dir, 'config.json');
      await writeFile(file, `{"user":"client","password":${secret}}`);
      const badJson = await failure(
        resolveConfig(connectionSchema, connectionFields, { config: file }, {}),
      );
      expect(isJetactorError(badJson) && badJson.code).toBe('INVALID_OPTIONS');
      expect(badJson.message).toContain('is not valid JSON');
      expect(badJson.message).not.toContain(secret);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes user info in a URL as the credentials, as the NATS CLI does, and strips it from the URL', () => {
    expect(
      urlCredentials(['nats://client:p%40ss@127.0.0.1:4222', 'nats://127.0.0.1:4223']),
    ).toEqual({
      servers: ['nats://127.0.0.1:4222', 'nats://127.0.0.1:4223'],
      credentials: { user: 'client', pass: 'p@ss' },
    });
    expect(urlCredentials(['tls://s3cret@host:4222'])).toEqual({
      servers: ['tls://host:4222'],
      credentials: { token: 's3cret' },
    });
    expect(urlCredentials(['nats://127.0.0.1:4222'])).toEqual({
      servers: ['nats://127.0.0.1:4222'],
    });
  });
});
