/**
 * Every error code the runtime itself raises, with the kind of error that carries it.
 *
 * The list is the contract: codes are stable, `docs/errors.md` documents each one, and a test
 * checks that the two agree. Domain code adds its own codes through {@link DomainError}.
 */
export const errorCodes = {
  // Rejections: the command is wrong; retrying the same command cannot help.
  UNKNOWN_DOMAIN: 'rejection',
  UNKNOWN_AGGREGATE: 'rejection',
  AMBIGUOUS_AGGREGATE: 'rejection',
  UNKNOWN_COMMAND: 'rejection',
  INVALID_ID: 'rejection',
  INVALID_COMMAND: 'rejection',
  VALIDATION_FAILED: 'rejection',
  INVALID_TRANSITION: 'rejection',
  WRONG_EXPECTED_VERSION: 'rejection',
  DECIDE_FAILED: 'rejection',
  INVALID_EVENT: 'rejection',
  EVOLVE_FAILED: 'rejection',
  COMMIT_TOO_LARGE: 'rejection',
  INVALID_SUBJECT: 'rejection',
  INVALID_HEADER: 'rejection',
  INVALID_PAYLOAD: 'rejection',
  PAYLOAD_TOO_LARGE: 'rejection',
  DEAD_LETTER_NOT_FOUND: 'rejection',
  UNKNOWN_QUERY: 'rejection',
  UNKNOWN_PROJECTION: 'rejection',
  INVALID_REQUEST: 'rejection',
  COMMANDS_DISABLED: 'rejection',
  // Conflicts: another writer got there first; retrying may succeed.
  CONCURRENCY_CONFLICT: 'conflict',
  // Infrastructure: something outside the command failed; retry with backoff.
  SHUTTING_DOWN: 'infrastructure',
  AGGREGATE_UNAVAILABLE: 'infrastructure',
  DEADLINE_EXCEEDED: 'infrastructure',
  REPLAY_FAILED: 'infrastructure',
  STORE_FAILED: 'infrastructure',
  STORE_CLOSED: 'infrastructure',
  CORRUPT_DATA: 'infrastructure',
  STORE_TIMEOUT: 'infrastructure',
  STORE_UNAVAILABLE: 'infrastructure',
  NATS_SERVER_FAILED: 'infrastructure',
  NATS_SERVER_STOPPED: 'infrastructure',
  OVERLOADED: 'infrastructure',
  NO_RESPONDERS: 'infrastructure',
  REQUEST_TIMEOUT: 'infrastructure',
  REQUEST_FAILED: 'infrastructure',
  CONNECTION_FAILED: 'infrastructure',
  INVALID_REPLY: 'infrastructure',
  INTERNAL_ERROR: 'infrastructure',
  REACTOR_HANDLER_FAILED: 'infrastructure',
  REACTOR_UNAVAILABLE: 'infrastructure',
  PROJECTION_BEHIND: 'infrastructure',
  PROJECTION_UNAVAILABLE: 'infrastructure',
  PROJECTION_HANDLER_FAILED: 'infrastructure',
  PROJECTION_FENCED: 'infrastructure',
  READ_MODEL_FAILED: 'infrastructure',
  QUERY_FAILED: 'infrastructure',
  LEASES_UNAVAILABLE: 'infrastructure',
  NOT_PARTITION_OWNER: 'infrastructure',
  // Definitions and configuration: found when the program starts.
  INVALID_DEFINITION: 'definition',
  IMPURE_MACHINE: 'definition',
  INVALID_NAME: 'definition',
  DUPLICATE_NAME: 'definition',
  UNDECLARED_EVENT: 'definition',
  UNHANDLED_EVENT: 'definition',
  INVALID_OPTIONS: 'config',
  STREAM_CONFIG_CONFLICT: 'config',
  REPLICAS_UNSUPPORTED: 'config',
  CONSUMER_CONFIG_CONFLICT: 'config',
  LEASE_CONFIG_CONFLICT: 'config',
  NATS_SERVER_NOT_FOUND: 'config',
  INSPECTOR_UNAVAILABLE: 'config',
  PERMISSION_DENIED: 'config',
} as const satisfies Record<string, ErrorKind>;

/** How an error should be handled by whoever receives it. */
export type ErrorKind = 'rejection' | 'conflict' | 'infrastructure' | 'definition' | 'config';

/** A code the runtime raises. */
export type ErrorCode = keyof typeof errorCodes;
