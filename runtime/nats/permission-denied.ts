import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError, InfrastructureError, JetactorError, describeError } from '../errors.js';

/** What nats.js reports when the server refuses a publish or a subscription (`-ERR 'Permissions Violation …'`). */
export interface PermissionViolation extends Error {
  /** `publish` or `subscription`. */
  operation: string;
  /** The subject refused. */
  subject: string;
  /** The queue group of a refused subscription. */
  queue?: string;
}

/**
 * True for nats.js' `PermissionViolationError`, found on the error itself or on its `cause`s
 * (JetStream API calls wrap it in a `RequestError`): the server's authorization for this
 * connection's user does not allow the publish or subscription.
 */
export function isPermissionViolation(error: unknown): boolean {
  return permissionViolationOf(error) !== undefined;
}

/** The `PermissionViolationError` on `error` or on its `cause`s, if any. */
export function permissionViolationOf(error: unknown): PermissionViolation | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    if (current.name === 'PermissionViolationError' && 'subject' in current) {
      return current as PermissionViolation;
    }
    current = current.cause;
  }
  return undefined;
}

/**
 * Turns a permission violation into the runtime's `PERMISSION_DENIED` (kind config: retrying with
 * the same user cannot help). `doing` says what was attempted, e.g. `reading stream jetactor_bank`.
 * A refused subscription to the connection's own inbox gets a hint about the inbox prefix.
 */
export function permissionDenied(
  error: unknown,
  doing: string,
  connection?: NatsConnection,
): ConfigError {
  const violation = permissionViolationOf(error);
  const operation = violation?.operation === 'subscription' ? 'subscribe to' : 'publish to';
  const subject = violation?.subject ?? '(unknown subject)';
  const inbox = inboxPrefixOf(connection);
  const hint =
    violation?.operation === 'subscription' && subject.startsWith(`${inbox}.`)
      ? `That subject is this connection's inbox (prefix ${JSON.stringify(inbox)}): connect with the inbox prefix the user's permissions allow (--inbox-prefix, or inboxPrefix in connect()).`
      : `The server's authorization for this user does not cover it: connect as a user whose permissions do (jetactor permissions <domain modules…> prints what each role needs), or host only what this user may.`;
  return new ConfigError(
    `NATS refused ${doing}: this connection's user may not ${operation} ${JSON.stringify(subject)}. ${hint} See docs/security.md.`,
    {
      code: 'PERMISSION_DENIED',
      cause: error,
      details: {
        operation: violation?.operation,
        subject,
        ...(violation?.queue === undefined ? {} : { queue: violation.queue }),
      },
    },
  );
}

/** The inbox prefix a connection was opened with (`_INBOX` unless `inboxPrefix` was given). */
export function inboxPrefixOf(connection: NatsConnection | undefined): string {
  const options = (connection as { options?: { inboxPrefix?: unknown } } | undefined)?.options;
  const prefix = options?.inboxPrefix;
  return typeof prefix === 'string' && prefix !== '' ? prefix : '_INBOX';
}

/**
 * What a failed JetStream request becomes: a runtime error as it is, a refused permission as
 * `PERMISSION_DENIED`, anything else as the retryable `STORE_UNAVAILABLE`. `doing` says what was
 * attempted; `then` ends the message (default: check the server).
 */
export function jetstreamUnavailable(
  doing: string,
  error: unknown,
  then = 'Check that nats-server is up with JetStream.',
): JetactorError {
  if (error instanceof JetactorError) return error;
  if (isPermissionViolation(error)) return permissionDenied(error, doing);
  return new InfrastructureError(
    'STORE_UNAVAILABLE',
    `JetStream did not answer while ${doing}: ${describeError(error)}. ${then}`,
    { cause: error },
  );
}
