import type { MsgHdrs, NatsConnection, Payload } from '@nats-io/transport-node';

/**
 * Publishes `data` on `subject`, with `reply` as its reply subject when given. `subject` is
 * checked as nats.js' `publish()` checks it; `reply` is not: it must be a subject the caller made
 * without spaces, tabs or line breaks (an inbox and a number), or one received from the server.
 */
export type DirectPublish = (
  subject: string,
  data: Payload | undefined,
  reply: string | undefined,
  headers: MsgHdrs | undefined,
) => void;

/**
 * nats.js' protocol handler, which `publish()` calls after checking the connection's state and
 * both subjects with a regular expression (not public API).
 */
interface ProtocolPublisher {
  publish(
    subject: string,
    data: Payload | undefined,
    options: { reply?: string; headers?: MsgHdrs },
  ): void;
  noMorePublishing: boolean;
}

/**
 * `publish()` for subjects a caller made or received: nats.js tests every subject of every
 * publish, the reply subject too, with a regular expression, which first flattens the string made
 * for each message: about a fifth of a microsecond per subject, and a string of garbage. This
 * publishes through the connection's protocol handler after nats.js' checks of the connection
 * (closed, draining) and of `subject`, without the check of `reply`; whatever nats.js would refuse
 * still goes through `publish()`, which throws its own error. On a connection of another shape
 * (another nats.js version) it is `publish()`.
 */
export function directPublish(nc: NatsConnection): DirectPublish {
  const protocol = (nc as unknown as { protocol?: Partial<ProtocolPublisher> }).protocol;
  if (
    typeof protocol !== 'object' ||
    protocol === null ||
    typeof protocol.publish !== 'function' ||
    typeof protocol.noMorePublishing !== 'boolean'
  ) {
    return (subject, data, reply, headers) => {
      nc.publish(subject, data, { reply, headers });
    };
  }
  const handler = protocol as ProtocolPublisher;
  return (subject, data, reply, headers) => {
    if (handler.noMorePublishing || nc.isClosed() || !isPlainSubject(subject)) {
      // nats.js' own checks, and its errors (closed, draining, a subject it refuses).
      nc.publish(subject, data, { reply, headers });
      return;
    }
    handler.publish(subject, data, { reply, headers });
  };
}

/** What nats.js' `publish()` accepts as a subject: not empty, no space, tab or line break. */
function isPlainSubject(subject: string): boolean {
  return subject.length > 0 && !WHITESPACE.test(subject);
}

const WHITESPACE = /[ \n\r\t]/;
