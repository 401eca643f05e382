import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Log levels accepted by {@link createLogger}. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * The runtime's default logger: pino, JSON lines on stderr, `warn` and above unless
 * `JETACTOR_LOG_LEVEL` or `level` says otherwise.
 */
export function createLogger(level?: LogLevel): Logger {
  const chosen = level ?? (process.env.JETACTOR_LOG_LEVEL as LogLevel | undefined) ?? 'warn';
  return pino({ name: 'jetactor', level: chosen }, pino.destination({ fd: 2, sync: false }));
}
