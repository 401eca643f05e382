import { pino, type DestinationStream, type Logger, type LoggerOptions as PinoOptions } from 'pino';

export type { Logger } from 'pino';

/** Log levels accepted by {@link createLogger}. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Options of {@link createLogger}; every field is optional. */
export interface LoggerOptions {
  /** Lowest level written. Default `JETACTOR_LOG_LEVEL`, else `warn`. */
  level?: LogLevel;
  /**
   * Replaces what may hold event or command data with `[redacted]`: error `details` (domain errors
   * carry the values they refused), and fields named `input`, `data`, `payload`, `response`,
   * `state`, `context` (top level or one level down). Messages are kept.
   * Default: `JETACTOR_REDACT_PAYLOADS` is `1` or `true`.
   */
  redactPayloads?: boolean;
  /** Where the JSON lines go. Default stderr (asynchronous). */
  destination?: DestinationStream;
}

/**
 * Field paths masked in every log line: credentials, at the top level or up to two objects down.
 * `token` is masked inside objects only (connection options); a top-level `token` is a partition
 * lease token.
 */
export const CREDENTIAL_LOG_PATHS: readonly string[] = Object.freeze([
  ...['password', 'pass', 'nkey', 'seed', 'jwt', 'authToken', 'auth_token', 'creds'].flatMap(
    (key) => [key, `*.${key}`, `*.*.${key}`],
  ),
  '*.token',
  '*.*.token',
]);

/** Field paths masked when payloads are redacted ({@link LoggerOptions.redactPayloads}). */
export const PAYLOAD_LOG_PATHS: readonly string[] = Object.freeze([
  ...['input', 'data', 'payload', 'response', 'state', 'context'].flatMap((key) => [
    key,
    `*.${key}`,
  ]),
  'details',
  '*.details',
  '*.*.details',
]);

/** The text that replaces a redacted value. */
export const REDACTED = '[redacted]';

/**
 * pino options with the runtime's redaction: credentials always, payloads when asked. For
 * loggers built with another destination (the CLI's pretty output), so they redact the same way.
 */
export function loggerOptions(options: Omit<LoggerOptions, 'destination'> = {}): PinoOptions {
  const level = options.level ?? envLevel() ?? 'warn';
  const paths = [
    ...CREDENTIAL_LOG_PATHS,
    ...((options.redactPayloads ?? envRedactPayloads()) ? PAYLOAD_LOG_PATHS : []),
  ];
  return { name: 'jetactor', level, redact: { paths, censor: REDACTED } };
}

/**
 * The runtime's default logger: pino, JSON lines on stderr, `warn` and above unless
 * `JETACTOR_LOG_LEVEL` or `level` says otherwise. Credentials (`password`, `pass`, `nkey`, `seed`,
 * `jwt`, … fields; see {@link CREDENTIAL_LOG_PATHS}) are always masked; payloads too with
 * `redactPayloads`.
 */
export function createLogger(options: LogLevel | LoggerOptions = {}): Logger {
  const resolved = typeof options === 'string' ? { level: options } : options;
  return pino(
    loggerOptions(resolved),
    resolved.destination ?? pino.destination({ fd: 2, sync: false }),
  );
}

function envLevel(): LogLevel | undefined {
  const level = process.env.JETACTOR_LOG_LEVEL;
  return level === undefined || level === '' ? undefined : (level as LogLevel);
}

function envRedactPayloads(): boolean {
  return /^(1|true|yes)$/i.test(process.env.JETACTOR_REDACT_PAYLOADS ?? '');
}
