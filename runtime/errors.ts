import { errorCodes, type ErrorCode, type ErrorKind } from './error-codes.js';

/** The serialisable form of an error, as it travels in a command reply. */
export interface ErrorJSON {
  /** Stable machine-readable code, e.g. `VALIDATION_FAILED` or a domain code. */
  code: string;
  /** Human-readable message that names the bad value and the fix. */
  message: string;
  /** How the receiver should treat it. */
  kind: ErrorKind;
  /** Structured details: zod issues, expected and actual versions, … */
  details?: unknown;
}

/** Options shared by every error constructor. */
export interface JetactorErrorOptions {
  /** Structured details, sent along with the error. */
  details?: unknown;
  /** The underlying error, kept for logs. */
  cause?: unknown;
}

/**
 * Base class of every error the runtime raises or forwards.
 *
 * `code` is stable; `retryable` tells whether sending the same command again can help.
 */
export class JetactorError extends Error {
  override name = 'JetactorError';
  /** Stable code, documented in docs/errors.md (runtime codes) or by the domain. */
  readonly code: string;
  /** How the error should be handled. */
  readonly kind: ErrorKind;
  /** Structured details. */
  readonly details: unknown;

  constructor(kind: ErrorKind, code: string, message: string, options: JetactorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = code;
    this.details = options.details;
  }

  /** Whether sending the same command again (same command id) may succeed. */
  get retryable(): boolean {
    return this.kind === 'conflict' || this.kind === 'infrastructure';
  }

  /** The form sent over the wire; `cause` stays local. */
  toJSON(): ErrorJSON {
    const json: ErrorJSON = { code: this.code, message: this.message, kind: this.kind };
    if (this.details !== undefined) json.details = this.details;
    return json;
  }
}

/** The command was refused: invalid input, invalid transition, business rule. Never retry. */
export class RejectionError extends JetactorError {
  override name = 'RejectionError';
  constructor(code: ErrorCode, message: string, options?: JetactorErrorOptions) {
    super('rejection', code, message, options);
  }
}

/**
 * A rejection raised by domain code in `decide`, with a code of the domain's choosing.
 *
 * @example throw new DomainError('INSUFFICIENT_FUNDS', `balance ${b} is below ${amount}`, { balance: b })
 */
export class DomainError extends JetactorError {
  override name = 'DomainError';
  constructor(code: string, message: string, details?: unknown) {
    super('rejection', code, message, details === undefined ? {} : { details });
  }
}

/** Another writer changed the aggregate first; retrying the command may succeed. */
export class ConflictError extends JetactorError {
  override name = 'ConflictError';
  constructor(code: ErrorCode, message: string, options?: JetactorErrorOptions) {
    super('conflict', code, message, options);
  }
}

/** The store, the network or the node failed; retry with backoff and the same command id. */
export class InfrastructureError extends JetactorError {
  override name = 'InfrastructureError';
  constructor(code: ErrorCode, message: string, options?: JetactorErrorOptions) {
    super('infrastructure', code, message, options);
  }
}

/** A domain, aggregate or reactor definition is wrong; found when it is defined or hosted. */
export class DefinitionError extends JetactorError {
  override name = 'DefinitionError';
  constructor(code: ErrorCode, message: string, options?: JetactorErrorOptions) {
    super('definition', code, message, options);
  }
}

/** Options of {@link ConfigError}. */
export interface ConfigErrorOptions extends JetactorErrorOptions {
  /** The code; `INVALID_OPTIONS` when omitted. */
  code?: ErrorCode;
}

/**
 * The runtime's configuration or its environment is wrong (options, an existing stream, the
 * server version); `details` holds the zod issues or the conflicting values.
 */
export class ConfigError extends JetactorError {
  override name = 'ConfigError';
  constructor(message: string, options: ConfigErrorOptions = {}) {
    super('config', options.code ?? 'INVALID_OPTIONS', message, options);
  }
}

/** True for any error raised by the runtime or by domain code through {@link DomainError}. */
export function isJetactorError(error: unknown): error is JetactorError {
  return error instanceof JetactorError;
}

/** True for errors that retrying the same command cannot fix (including domain rejections). */
export function isRejectionError(error: unknown): error is JetactorError {
  return error instanceof JetactorError && error.kind === 'rejection';
}

/** True for errors raised by domain code. */
export function isDomainError(error: unknown): error is DomainError {
  return error instanceof DomainError;
}

/** True for concurrency conflicts. */
export function isConflictError(error: unknown): error is ConflictError {
  return error instanceof JetactorError && error.kind === 'conflict';
}

/** True for infrastructure failures (retry with backoff). */
export function isInfrastructureError(error: unknown): error is InfrastructureError {
  return error instanceof JetactorError && error.kind === 'infrastructure';
}

/** True for definition errors. */
export function isDefinitionError(error: unknown): error is DefinitionError {
  return error instanceof JetactorError && error.kind === 'definition';
}

/** True for configuration errors. */
export function isConfigError(error: unknown): error is ConfigError {
  return error instanceof JetactorError && error.kind === 'config';
}

/**
 * Rebuilds a typed error from its wire form, so a remote caller gets the same classes as an
 * in-process one.
 */
export function errorFromJSON(json: ErrorJSON): JetactorError {
  const options = json.details === undefined ? {} : { details: json.details };
  const known = json.code in errorCodes ? (json.code as ErrorCode) : undefined;
  if (known === undefined) {
    return json.kind === 'rejection'
      ? new DomainError(json.code, json.message, json.details)
      : new JetactorError(json.kind, json.code, json.message, options);
  }
  switch (json.kind) {
    case 'rejection':
      return new RejectionError(known, json.message, options);
    case 'conflict':
      return new ConflictError(known, json.message, options);
    case 'infrastructure':
      return new InfrastructureError(known, json.message, options);
    case 'definition':
      return new DefinitionError(known, json.message, options);
    case 'config':
      return new ConfigError(json.message, { ...options, code: known });
  }
}

/** Wraps anything thrown into a message, for logs and error causes. */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
