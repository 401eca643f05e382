import type { NatsConnection } from '@nats-io/transport-node';

/** The method of nats.js' `ProtocolHandler` that writes a protocol line (not public API). */
interface ProtocolLines {
  sendCommand?: (command: string | Uint8Array, ...payloads: Uint8Array[]) => void;
}

const pooled = new WeakSet<object>();

/**
 * nats.js turns the protocol line of every message it sends (`PUB`/`HPUB <subject> <reply>
 * <sizes>`) into bytes with `TextEncoder.encode`, a new `ArrayBuffer` each time: about 0.6 µs of
 * a publish, and a backing store for the GC to track. This has the connection's protocol handler
 * turn them into bytes with `Buffer.from` instead (the same UTF-8, in a slice of Node's buffer
 * pool). Once per connection, and only on a connection of the shape this nats.js version has;
 * returns whether the connection's lines are pooled.
 */
export function poolProtocolLines(nc: NatsConnection): boolean {
  const protocol = (nc as unknown as { protocol?: ProtocolLines }).protocol;
  if (typeof protocol !== 'object' || protocol === null) return false;
  if (pooled.has(protocol)) return true;
  const send = protocol.sendCommand;
  if (typeof send !== 'function') return false;
  protocol.sendCommand = function (
    this: ProtocolLines,
    command: string | Uint8Array,
    ...payloads: Uint8Array[]
  ): void {
    send.call(
      this,
      typeof command === 'string' ? Buffer.from(command, 'utf8') : command,
      ...payloads,
    );
  };
  pooled.add(protocol);
  return true;
}
