import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
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

/** How long a command waits for the server to accept its connection, in milliseconds. */
export const CONNECT_TIMEOUT_MS = 5_000;

/** The NATS server a command uses by default. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** Connection fields shared by `node`, `send`, `state` and `events`. */
export const connectionFields = {
  nats: { flag: 'nats', env: 'NATS_URL' },
  creds: { flag: 'creds', env: 'JETACTOR_CREDS', path: true },
  nkey: { flag: 'nkey', env: 'JETACTOR_NKEY', path: true },
  user: { flag: 'user', env: 'JETACTOR_USER' },
  password: { flag: 'password', env: 'JETACTOR_PASSWORD' },
  token: { flag: 'token', env: 'JETACTOR_TOKEN' },
  tlsCa: { flag: 'tls-ca', env: 'JETACTOR_TLS_CA', path: true },
  tlsCert: { flag: 'tls-cert', env: 'JETACTOR_TLS_CERT', path: true },
  tlsKey: { flag: 'tls-key', env: 'JETACTOR_TLS_KEY', path: true },
  inboxPrefix: { flag: 'inbox-prefix', env: 'JETACTOR_INBOX_PREFIX' },
  prefix: { flag: 'prefix', env: 'JETACTOR_PREFIX' },
  logLevel: { flag: 'log-level', env: 'JETACTOR_LOG_LEVEL' },
} as const satisfies Record<string, FieldSource>;

/** The flags of {@link connectionFields}, plus `--config`, for parseArgs. */
export const connectionFlags = {
  nats: { type: 'string' },
  creds: { type: 'string' },
  nkey: { type: 'string' },
  user: { type: 'string' },
  password: { type: 'string' },
  token: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'inbox-prefix': { type: 'string' },
  prefix: { type: 'string' },
  'log-level': { type: 'string' },
  config: { type: 'string' },
} as const satisfies FlagOptions;

/** Help lines of the connection flags. */
export const connectionHelp = `Connection (a flag wins over its environment variable, which wins over the --config file):
  --nats <urls>          NATS server URL(s), comma-separated (env NATS_URL; default ${DEFAULT_NATS_URL})
  --creds <file>         NATS credentials file (env JETACTOR_CREDS)
  --nkey <file>          file holding an nkey seed (SU…) for an nkey user (env JETACTOR_NKEY)
  --user <name>          user name, with --password (env JETACTOR_USER, JETACTOR_PASSWORD)
  --password <secret>
  --token <token>        authentication token (env JETACTOR_TOKEN)
  --tls-ca <file>        CA certificate to verify the server (env JETACTOR_TLS_CA)
  --tls-cert <file>      client certificate, with --tls-key (env JETACTOR_TLS_CERT, JETACTOR_TLS_KEY)
  --tls-key <file>
  --inbox-prefix <p>     prefix of reply subjects, instead of _INBOX, for users whose permissions
                         allow only their own inbox (env JETACTOR_INBOX_PREFIX; docs/security.md)
  --prefix <name>        subject, stream and bucket prefix (env JETACTOR_PREFIX; default ${DEFAULT_PREFIX})
  --config <file.json>   JSON object with any of: nats, creds, nkey, user, password, token,
                         tlsCa, tlsCert, tlsKey, inboxPrefix, prefix, logLevel (env JETACTOR_CONFIG)
  --log-level <level>    fatal|error|warn|info|debug|trace|silent (env JETACTOR_LOG_LEVEL)
`;

const natsUrl = z.string().transform((value, ctx) => {
  const url = value.trim();
  const parsed = parseNatsUrl(url);
  if (parsed === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `${redactUrlCredentials(JSON.stringify(value))} is not a NATS URL; use e.g. nats://127.0.0.1:4222 or tls://host:4222 (comma-separate several)`,
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
  nkey: readableFile.optional(),
  user: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
  token: z.string().min(1).optional(),
  tlsCa: readableFile.optional(),
  tlsCert: readableFile.optional(),
  tlsKey: readableFile.optional(),
  inboxPrefix: z
    .string()
    .regex(
      /^[^\s.*>]+(\.[^\s.*>]+)*$/u,
      'must be subject tokens separated by "." (no "*", ">" or whitespace), e.g. _INBOX_bank-node',
    )
    .optional(),
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
          : ` (${redactUrlCredentials(JSON.stringify(value))})`;
      return `${where}${shown}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}.`, {
      details: { issues: parsed.error.issues, sources: from },
    });
  }
  checkAuth(parsed.data, from);
  return Object.freeze(parsed.data) as Readonly<z.output<S>>;
}

/**
 * Opens a NATS connection from resolved settings; errors say what to fix. No error message or log
 * line shows a password, token, nkey seed or credentials: URLs are shown with their user info
 * masked ({@link displayServers}).
 */
export async function connectNats(
  config: ConnectionConfig,
  name: string,
  options: { reconnect?: boolean } = {},
): Promise<NatsConnection> {
  const fromUrl = urlCredentials(config.nats);
  const opts: ConnectionOptions = {
    servers: fromUrl.servers,
    name,
    maxReconnectAttempts: options.reconnect === true ? -1 : 0,
    // nats.js' default is 20 s; a server that drops the handshake (a missing client certificate)
    // is only noticed then.
    timeout: CONNECT_TIMEOUT_MS,
  };
  if (config.creds !== undefined) {
    opts.authenticator = credsAuthenticator(readFileSync(config.creds));
  }
  if (config.nkey !== undefined) {
    opts.authenticator = nkeyAuthenticator(
      new TextEncoder().encode(readFileSync(config.nkey, 'utf8').trim()),
    );
  }
  if (config.user !== undefined) {
    opts.user = config.user;
    opts.pass = config.password;
  }
  if (config.token !== undefined) opts.token = config.token;
  // nats.js ignores the user info of a URL; take it as the NATS CLI does, unless a flag gave some.
  if (
    opts.authenticator === undefined &&
    opts.user === undefined &&
    opts.token === undefined &&
    fromUrl.credentials !== undefined
  ) {
    Object.assign(opts, fromUrl.credentials);
  }
  if (config.inboxPrefix !== undefined) opts.inboxPrefix = config.inboxPrefix;
  // nats.js drops the scheme of a URL: a tls:// URL alone would not require TLS.
  const tlsUrl = config.nats.some((url) => /^tls:\/\//i.test(url));
  if (config.tlsCa !== undefined || config.tlsCert !== undefined || tlsUrl) {
    const ips = ipHosts(config.nats);
    opts.tls = {
      ...(config.tlsCa === undefined ? {} : { caFile: config.tlsCa }),
      ...(config.tlsCert === undefined ? {} : { certFile: config.tlsCert }),
      ...(config.tlsKey === undefined ? {} : { keyFile: config.tlsKey }),
      // nats.js upgrades a connection to an IP address without naming the address to Node's TLS,
      // which then checks the certificate against "localhost"; check it against the addresses.
      ...(ips.length === 0
        ? {}
        : {
            checkServerIdentity: (host: string, cert: PeerCertificate) => {
              const direct = checkServerIdentity(host, cert);
              if (direct === undefined || host !== 'localhost') return direct;
              return ips.some((ip) => checkServerIdentity(ip, cert) === undefined)
                ? undefined
                : direct;
            },
          }),
    };
  }
  try {
    return await connect(opts);
  } catch (error) {
    throw connectionError(config, error);
  }
}

/** The server URLs of `config`, comma-separated, with any password in them masked: for banners and messages. */
export function displayServers(config: Pick<ConnectionConfig, 'nats'>): string {
  return config.nats.map(redactUrlCredentials).join(',');
}

/** `nats://user:secret@host` → `nats://user:***@host` (and `nats://token@host` → `nats://***@host`), anywhere in `text`. */
export function redactUrlCredentials(text: string): string {
  return text.replace(
    /\b((?:nats|tls|wss?):\/\/)([^\s/@,"']+)@/g,
    (_match, scheme: string, userInfo: string) => {
      const colon = userInfo.indexOf(':');
      return `${scheme}${colon === -1 ? '***' : `${userInfo.slice(0, colon)}:***`}@`;
    },
  );
}

function connectionError(config: ConnectionConfig, error: unknown): Error {
  const why = redactSecrets(describeError(error), config);
  const where = displayServers(config);
  if (/authori[sz]ation|authentication|permission/i.test(why)) {
    return new ConfigError(
      `NATS at ${where} refused the credentials (${why}); check --creds, --nkey, --user/--password or --token.`,
      { cause: error },
    );
  }
  const tls = tlsProblem(why, config);
  if (tls !== undefined) {
    return new InfrastructureError(
      'CONNECTION_FAILED',
      `Cannot connect to NATS at ${where}: ${why}. ${tls}`,
      { cause: error },
    );
  }
  return new InfrastructureError(
    'CONNECTION_FAILED',
    `Cannot connect to NATS at ${where}: ${why}. Is nats-server running there? (nats-server -c nats.conf starts one; jetactor dev prints the URL of its embedded one.)`,
    { cause: error },
  );
}

/**
 * The user info of the first URL that has some (`nats://user:password@host` or
 * `nats://token@host`, percent-decoded), and every URL without it.
 */
export function urlCredentials(urls: readonly string[]): {
  servers: string[];
  credentials?: { user: string; pass: string } | { token: string };
} {
  let credentials: { user: string; pass: string } | { token: string } | undefined;
  const servers = urls.map((text) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return text;
    }
    if (url.username === '' && url.password === '') return text;
    if (credentials === undefined) {
      const user = decodeURIComponent(url.username);
      credentials = text
        .slice(text.indexOf('://') + 3)
        .split('@')[0]!
        .includes(':')
        ? { user, pass: decodeURIComponent(url.password) }
        : { token: user };
    }
    url.username = '';
    url.password = '';
    return url.toString().replace(/\/$/, '');
  });
  return credentials === undefined ? { servers } : { servers, credentials };
}

/** The hosts of `urls` that are IP addresses. */
function ipHosts(urls: readonly string[]): string[] {
  return urls
    .map((url) => new URL(url).hostname.replace(/^\[(.*)\]$/, '$1'))
    .filter((host) => isIP(host) !== 0);
}

/** What to do about a failed TLS handshake, or undefined when the error is not about TLS. */
function tlsProblem(why: string, config: ConnectionConfig): string | undefined {
  if (/does not support 'tls'/i.test(why)) {
    return 'The server does not offer TLS on that port: connect to its TLS port, or drop the --tls-* options and the tls:// scheme to connect without TLS.';
  }
  if (/self[- ]signed|unable to (get|verify)|certificate|CERT_|ERR_TLS|ssl|tls/i.test(why)) {
    if (/altnames|hostname|Host: /i.test(why)) {
      return "The server's certificate does not name the host in the URL: connect to a name or IP its subjectAltName lists, or reissue the certificate.";
    }
    if (/certificate required|alert number 116|bad certificate|alert number 42/i.test(why)) {
      return 'The server asks for a client certificate (tls { verify: true }): pass --tls-cert and --tls-key signed by a CA it trusts.';
    }
    return config.tlsCa === undefined
      ? "The server's TLS certificate is not trusted here: pass --tls-ca <file> with the CA certificate that signed it (env JETACTOR_TLS_CA)."
      : `The server's TLS certificate is not signed by the CA in --tls-ca ${config.tlsCa}, or the handshake failed: check that file and the server's tls block.`;
  }
  if (/^timeout$/i.test(why) && config.tlsCa !== undefined && config.tlsCert === undefined) {
    return 'A server that asks for client certificates (tls { verify: true }) drops a client without one, which looks like this: pass --tls-cert and --tls-key signed by a CA it trusts.';
  }
  if (/tls.*(required|not available)|requires? tls|secure connection/i.test(why)) {
    return config.tlsCa === undefined && config.tlsCert === undefined
      ? 'The server requires TLS: pass --tls-ca <file> (its CA certificate) or use a tls:// URL.'
      : 'The server does not offer TLS on that port: remove the --tls-* options or connect to its TLS port.';
  }
  return undefined;
}

/** Masks the configured secrets should a message quote them (URLs, passwords, tokens). */
function redactSecrets(text: string, config: ConnectionConfig): string {
  let out = redactUrlCredentials(text);
  for (const secret of [config.password, config.token]) {
    if (secret !== undefined && secret.length > 0) out = out.split(secret).join('***');
  }
  return out;
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
    // Newer V8 quotes the start of the text ("… is not valid JSON"): it may hold a password.
    const why = describeError(error).replace(/,\s*".*"\s+is not valid JSON\s*$/su, '');
    throw new ConfigError(`${label} is not valid JSON: ${why}.`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(
      `${label} must hold a JSON object such as {"nats":"nats://127.0.0.1:4222"}; it holds ${Array.isArray(value) ? 'an array' : value === null ? 'null' : `a ${typeof value}`}.`,
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
  const methods = ['creds', 'nkey', 'user', 'token'].filter(given);
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
