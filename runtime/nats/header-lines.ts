import type { Msg } from '@nats-io/transport-node';

/** A message's headers as `[key, value]` pairs, in the order they were sent. */
export type HeaderLines = readonly (readonly [key: string, value: string])[];

const NONE: HeaderLines = [];

const NO_HEADERS = { hasStatus: false, lines: NONE };

/** The first line of a header block without a status. */
const STATUS_LINE = 'NATS/1.0\r\n';

/** The fields of nats.js' `MsgImpl` that hold a received message as it came (not public API). */
interface ReceivedMsg {
  _headers?: unknown;
  _msg?: { hdr?: unknown };
  _rdata?: unknown;
}

/**
 * The headers of a received message as pairs: keys as sent, values trimmed, a repeated key once
 * per value, lines without `:` left out, as nats.js' `msg.headers` decodes them.
 *
 * `msg.headers` builds a `MsgHdrsImpl`, validating and canonicalising every key as it goes, and
 * each `get(k, Match.IgnoreCase)` lowercases all keys again: on a node serving commands, that was
 * the largest share of what a request allocates. This reads the header block of the message
 * nats.js received (its first `hdr` bytes) in one pass instead, and falls back to `msg.headers`
 * for any message that does not have that shape (another client version, a message built here).
 */
export function headerLines(msg: Msg): HeaderLines {
  return receivedHeaders(msg).lines;
}

/**
 * {@link headerLines}, and whether the message is a status message (`NATS/1.0 404 No Messages`,
 * `503` for no responders…): `hasStatus` is then true, and `msg.headers` gives its code and
 * description.
 */
export function receivedHeaders(msg: Msg): { hasStatus: boolean; lines: HeaderLines } {
  const received = msg as unknown as ReceivedMsg;
  const length = received._msg?.hdr;
  const data = received._rdata;
  if (received._headers === undefined && typeof length === 'number' && data instanceof Uint8Array) {
    if (length <= 0) return NO_HEADERS;
    if (length <= data.length) {
      const block = Buffer.from(data.buffer, data.byteOffset, length).toString('utf8');
      return { hasStatus: !block.startsWith(STATUS_LINE), lines: parseHeaderBlock(block) };
    }
  }
  const h = msg.headers;
  if (h === undefined) return NO_HEADERS;
  const lines: [string, string][] = [];
  for (const key of h.keys()) for (const value of h.values(key)) lines.push([key, value]);
  return { hasStatus: h.code !== 0, lines };
}

/** `NATS/1.0\r\nKey: value\r\n…\r\n\r\n` → pairs; the status line is not a header. */
export function parseHeaderBlock(block: string): HeaderLines {
  const lines: [string, string][] = [];
  let start = block.indexOf('\r\n');
  while (start !== -1) {
    start += 2;
    let end = block.indexOf('\r\n', start);
    if (end === -1) end = block.length;
    const colon = block.indexOf(':', start);
    if (colon !== -1 && colon < end) {
      lines.push([block.slice(start, colon), block.slice(colon + 1, end).trim()]);
    }
    start = end < block.length ? end : -1;
  }
  return lines;
}

/** The first value of `key` (ASCII case ignored), or `''` as nats.js' `get` answers. */
export function headerValue(lines: HeaderLines, key: string): string {
  const lower = key.toLowerCase();
  for (const [k, value] of lines) {
    if (k.length === lower.length && k.toLowerCase() === lower) return value;
  }
  return '';
}
