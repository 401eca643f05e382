import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  connect,
  credsAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
import { z } from 'zod';
import { ConfigError, InfrastructureError, describeError } from '../errors.js';
import { isIdentifier } from '../names.js';
import { DEFAULT_PREFIX } from '../nats/subjects.js';
import type { FlagOptions } from './cli-io.js';

/** Where a configuration field may come from, besides the `--config` file (same key). */
export interface FieldSource {
  /** Command-line flag, without the dashes. */
  flag?: string;
  /** Environment variable. */
  env?: string;
  /** True for paths: a relative path in the config file is relative to the file. */
  path?: boolean;
}

/** The NATS server a command uses by default. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** Connection fields shared by `node`, `send`, `state` and `events`. */
export const connectionFields = {
  nats: { flag: 'nats', env: 'NATS_URL' },
  creds: { flag: 'creds', env: 'JETACTOR_CREDS', path: true },
  user: { flag: 'user', env: 'JETACTOR_USER' },
  password: { flag: 'password', env: 'JETACTOR_PASSWORD' },
  token: { flag: 'token', env: 'JETACTOR_TOKEN' },
  tlsCa: { flag: 'tls-ca', env: 'JETACTOR_TLS_CA', path: true },
  tlsCert: { flag: 'tls-cert', env: 'JETACTOR_TLS_CERT', path: true },
  tlsKey: { flag: 'tls-key', env: 'JETACTOR_TLS_KEY', path: true },
  prefix: { flag: 'prefix', env: 'JETACTOR_PREFIX' },
  logLevel: { flag: 'log-level', env: 'JETACTOR_LOG_LEVEL' },
} as const satisfies Record<string, FieldSource>;

/** The flags of {@link connectionFields}, plus `--config`, for parseArgs. */
export const connectionFlags = {
  nats: { type: 'string' },
  creds: { type: 'string' },
  user: { type: 'string' },
  password: { type: 'string' },
  token: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  prefix: { type: 'string' },
  'log-level': { type: 'string' },
  config: { type: 'string' },
} as const satisfies FlagOptions;

/** Help lines of the connection flags. */
export const connectionHelp = `Connection (a flag wins over its environment variable, which wins over the --config file):
  --nats <urls>          NATS server URL(s), comma-separated (env NATS_URL; default ${DEFAULT_NATS_URL})
  --creds <file>         NATS credentials file (env JETACTOR_CREDS)
  --user <name>          user name, with --password (env JETACTOR_USER, JETACTOR_PASSWORD)
  --password <secret>
  --token <token>        authentication token (env JETACTOR_TOKEN)
  --tls-ca <file>        CA certificate to verify the server (env JETACTOR_TLS_CA)
  --tls-cert <file>      client certificate, with --tls-key (env JETACTOR_TLS_CERT, JETACTOR_TLS_KEY)
  --tls-key <file>
  --prefix <name>        subject, stream and bucket prefix (env JETACTOR_PREFIX; default ${DEFAULT_PREFIX})
  --config <file.json>   JSON object with any of: nats, creds, user, password, token, tlsCa,
                         tlsCert, tlsKey, prefix, logLevel (env JETACTOR_CONFIG)
  --log-level <level>    fatal|error|warn|info|debug|trace|silent (env JETACTOR_LOG_LEVEL)
`;

const natsUrl = z.string().transform((value, ctx) => {
  const url = value.trim();
  const parsed = parseNatsUrl(url);
  if (parsed === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(value)} is not a NATS URL; use e.g. nats://127.0.0.1:4222 or tls://host:4222 (comma-separate several)`,
    });
    return z.NEVER;
  }
  return parsed;
});

const readableFile = z
  .string()
  .min(1, 'must be a file path')
  .refine((path) => existsSync(path), {
    message: 'no such file; give the path of a readable file',
  });

/** Zod schema of the connection fields. */
export const connectionSchema = z.object({
  nats: z
    .union([z.string(), z.array(z.string())])
    .transform((value) =>
      (Array.isArray(value) ? value : value.split(',')).map((s) => s.trim()).filter(Boolean),
    )
    .pipe(z.array(natsUrl).min(1, 'give at least one NATS URL'))
    .default([DEFAULT_NATS_URL]),
  creds: readableFile.optional(),
  user: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
  token: z.string().min(1).optional(),
  tlsCa: readableFile.optional(),
  tlsCert: readableFile.optional(),
  tlsKey: readableFile.optional(),
  prefix: z
    .string()
    .refine(isIdentifier, {
      message:
        'must be letters, digits, "_" or "-", starting with a letter (it names subjects and streams)',
    })
    .default(DEFAULT_PREFIX),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
});

/** Resolved connection settings. */
export type ConnectionConfig = z.output<typeof connectionSchema>;

/**
 * A whole number from a flag or environment variable (text) or from the config file (a number).
 */
export function wholeNumber(min: number, max = Number.MAX_SAFE_INTEGER) {
  return z
    .unknown()
    .transform((value, ctx) => {
      if (typeof value === 'number') return value;
      if (typeof value === 'string' && /^\s*\d+\s*$/.test(value)) return Number(value);
      ctx.addIssue({ code: 'custom', message: 'must be a whole number' });
      return z.NEVER;
    })
    .pipe(
      z
        .number()
        .int('must be a whole number')
        .min(min, `must be at least ${min}`)
        .max(max, `must be at most ${max}`),
    );
}

/**
 * Merges the config file (`--config` or `JETACTOR_CONFIG`), the environment and the flags (in
 * that order, later wins), validates the result with `schema` and returns it frozen. A wrong value
 * is a `ConfigError` that names the field and where it came from.
 */
export async function resolveConfig<S extends z.ZodObject>(
  schema: S,
  fields: Record<string, FieldSource>,
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): Promise<Readonly<z.output<S>>> {
  const raw: Record<string, unknown> = {};
  const from: Record<string, string> = {};
  const configPath =
    typeof flags.config === 'string' ? flags.config : env.JETACTOR_CONFIG || undefined;
  if (configPath !== undefined) {
    const file = await readConfigFile(configPath, typeof flags.config === 'string');
    for (const [key, value] of Object.entries(file)) {
      const source = fields[key];
      raw[key] =
        source?.path === true && typeof value === 'string' && !isAbsolute(value)
          ? resolve(dirname(resolve(configPath)), value)
          : value;
      from[key] = `"${key}" in ${configPath}`;
    }
  }
  for (const [key, source] of Object.entries(fields)) {
    const fromEnv = source.env === undefined ? undefined : env[source.env];
    if (fromEnv !== undefined && fromEnv !== '') {
      raw[key] = fromEnv;
      from[key] = `env ${source.env}`;
    }
    const fromFlag = source.flag === undefined ? undefined : flags[source.flag];
    if (fromFlag !== undefined) {
      raw[key] = fromFlag;
      from[key] = `--${source.flag}`;
    }
  }
  const parsed = schema.strict().safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return `${configPath ?? 'the config file'} has unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; the known ones are ${Object.keys(fields).join(', ')}`;
      }
      const key = String(issue.path[0] ?? '');
      const where = from[key] ?? (key === '' ? 'configuration' : key);
      const value = raw[key];
      const shown =
        key === 'password' || key === 'token' || value === undefined || issue.path.length > 1
          ? ''
          : ` (${JSON.stringify(value)})`;
      return `${where}${shown}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}.`, {
      details: { issues: parsed.error.issues, sources: from },
    });
  }
  checkAuth(parsed.data, from);
  return Object.freeze(parsed.data) as Readonly<z.output<S>>;
}

/** Opens a NATS connection from resolved settings; errors say what to fix. */
export async function connectNats(
  config: ConnectionConfig,
  name: string,
  options: { reconnect?: boolean } = {},
): Promise<NatsConnection> {
  const opts: ConnectionOptions = {
    servers: config.nats,
    name,
    maxReconnectAttempts: options.reconnect === true ? -1 : 0,
  };
  if (config.creds !== undefined) {
    opts.authenticator = credsAuthenticator(readFileSync(config.creds));
  }
  if (config.user !== undefined) {
    opts.user = config.user;
    opts.pass = config.password;
  }
  if (config.token !== undefined) opts.token = config.token;
  if (config.tlsCa !== undefined || config.tlsCert !== undefined) {
    opts.tls = {
      ...(config.tlsCa === undefined ? {} : { caFile: config.tlsCa }),
      ...(config.tlsCert === undefined ? {} : { certFile: config.tlsCert }),
      ...(config.tlsKey === undefined ? {} : { keyFile: config.tlsKey }),
    };
  }
  try {
    return await connect(opts);
  } catch (error) {
    const why = describeError(error);
    const where = config.nats.join(', ');
    if (/authori[sz]ation|authentication|permission/i.test(why)) {
      throw new ConfigError(
        `NATS at ${where} refused the credentials (${why}); check --creds, --user/--password or --token.`,
        { cause: error },
      );
    }
    throw new InfrastructureError(
      'CONNECTION_FAILED',
      `Cannot connect to NATS at ${where}: ${why}. Is nats-server running there? (nats-server -c nats.conf starts one; jetactor dev prints the URL of its embedded one.)`,
      { cause: error },
    );
  }
}

async function readConfigFile(path: string, fromFlag: boolean): Promise<Record<string, unknown>> {
  const label = fromFlag ? `--config ${path}` : `JETACTOR_CONFIG ${path}`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `${label}: cannot read it (${describeError(error)}); give the path of a JSON file.`,
      { cause: error },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${label} is not valid JSON: ${describeError(error)}.`, {
      cause: error,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(
      `${label} must hold a JSON object such as {"nats":"nats://127.0.0.1:4222"}; it holds ${JSON.stringify(value)}.`,
    );
  }
  return value as Record<string, unknown>;
}

function checkAuth(config: Record<string, unknown>, from: Record<string, string>): void {
  const given = (key: string) => config[key] !== undefined;
  const name = (key: string) => from[key] ?? key;
  const problems: string[] = [];
  if (given('user') !== given('password')) {
    problems.push(
      `${name(given('user') ? 'user' : 'password')} needs ${given('user') ? '--password' : '--user'} too`,
    );
  }
  const methods = ['creds', 'user', 'token'].filter(given);
  if (methods.length > 1) {
    problems.push(
      `${methods.map(name).join(' and ')} are different ways to authenticate; give only one`,
    );
  }
  if (given('tlsCert') !== given('tlsKey')) {
    problems.push(
      `${name(given('tlsCert') ? 'tlsCert' : 'tlsKey')} needs ${given('tlsCert') ? '--tls-key' : '--tls-cert'} too`,
    );
  }
  if (problems.length > 0) {
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}.`, {
      details: { problems },
    });
  }
}

function parseNatsUrl(value: string): string | undefined {
  const withScheme = value.includes('://') ? value : `nats://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return undefined;
  }
  if (!['nats:', 'tls:'].includes(url.protocol) || url.hostname === '') return undefined;
  if (url.pathname !== '' && url.pathname !== '/') return undefined;
  if (url.search !== '' || url.hash !== '') return undefined;
  return withScheme;
}
