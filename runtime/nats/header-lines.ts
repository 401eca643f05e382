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
 * description. With `only` ({@link headerKeys}), the lines of those keys alone: the others are
 * not decoded (a direct get's reply has six headers, of which a read needs two).
 */
export function receivedHeaders(
  msg: Msg,
  only?: HeaderKeys,
): { hasStatus: boolean; lines: HeaderLines } {
  const received = msg as unknown as ReceivedMsg;
  const length = received._msg?.hdr;
  const data = received._rdata;
  if (received._headers === undefined && typeof length === 'number' && data instanceof Uint8Array) {
    if (length <= 0) return NO_HEADERS;
    if (length <= data.length) {
      const block = Buffer.from(data.buffer, data.byteOffset, length);
      return { hasStatus: !startsWithStatusLine(block), lines: parseHeaderBytes(block, only) };
    }
  }
  const h = msg.headers;
  if (h === undefined) return NO_HEADERS;
  const lines: [string, string][] = [];
  for (const key of h.keys()) {
    if (only !== undefined && !only.names.has(key.toLowerCase())) continue;
    for (const value of h.values(key)) lines.push([key, value]);
  }
  return { hasStatus: h.code !== 0, lines };
}

/** Header keys to read, prepared once by {@link headerKeys}. */
export interface HeaderKeys {
  /** The keys in lower case. */
  readonly names: ReadonlySet<string>;
  /** The same as ASCII bytes. */
  readonly bytes: readonly Uint8Array[];
}

/** Keys for {@link receivedHeaders}' `only` (matched ignoring ASCII case). */
export function headerKeys(...keys: string[]): HeaderKeys {
  const lower = keys.map((key) => key.toLowerCase());
  return { names: new Set(lower), bytes: lower.map((key) => Buffer.from(key, 'latin1')) };
}

/** `NATS/1.0\r\nKey: value\r\n…\r\n\r\n` → pairs; the status line is not a header. */
export function parseHeaderBlock(block: string | Uint8Array): HeaderLines {
  return parseHeaderBytes(
    typeof block === 'string'
      ? Buffer.from(block)
      : Buffer.from(block.buffer, block.byteOffset, block.length),
  );
}

/**
 * {@link parseHeaderBlock} of the block's bytes. Each key and value is a string decoded from its
 * own bytes: a slice of one string of the whole block would keep all of it alive for as long as
 * any value is kept (a command id an actor remembers kept its request's whole header block,
 * about 150 bytes, in the old generation).
 */
function parseHeaderBytes(bytes: Buffer, only?: HeaderKeys): HeaderLines {
  const lines: [string, string][] = [];
  const length = bytes.length;
  let start = lineEnd(bytes, 0);
  while (start !== -1) {
    start += 2;
    let end = lineEnd(bytes, start);
    if (end === -1) end = length;
    let colon = start;
    while (colon < end && bytes[colon] !== COLON) colon++;
    if (colon < end && (only === undefined || isOneOf(bytes, start, colon, only.bytes))) {
      // Spaces and tabs around the value are skipped here; `trim` takes any other white space
      // nats.js' decoding would (and returns a string with none as it is).
      let from = colon + 1;
      let to = end;
      while (from < to && isBlank(bytes[from] as number)) from++;
      while (to > from && isBlank(bytes[to - 1] as number)) to--;
      lines.push([keyAt(bytes, start, colon), valueAt(bytes, from, to)]);
    }
    start = end < length ? end : -1;
  }
  return lines;
}

/**
 * Header keys read so far, as their bytes and their string, so that a key that comes again (the
 * same few on every request, reply and acknowledgement) is not decoded again, and its lower case
 * ({@link lowerCaseKey}) is not made again. The first {@link MAX_KNOWN_KEYS} distinct keys are
 * kept; others are decoded each time.
 */
const knownKeys: { bytes: Buffer; key: string }[] = [];
const MAX_KNOWN_KEYS = 64;
/** Lower case of the keys read and looked up, up to {@link MAX_LOWER_CASE} of them. */
const lowerCase = new Map<string, string>();
const MAX_LOWER_CASE = 256;

/** The key in `bytes[start, end)`: the string of a known key, or a new one. */
function keyAt(bytes: Buffer, start: number, end: number): string {
  const length = end - start;
  next: for (const known of knownKeys) {
    if (known.bytes.length !== length) continue;
    for (let index = 0; index < length; index++) {
      if (bytes[start + index] !== known.bytes[index]) continue next;
    }
    return known.key;
  }
  const key = bytes.toString('utf8', start, end);
  if (knownKeys.length < MAX_KNOWN_KEYS) {
    knownKeys.push({ bytes: Buffer.from(bytes.subarray(start, end)), key });
  }
  return key;
}

/**
 * Short values read so far, in a small direct-mapped cache by a hash of their bytes: the same few
 * come on every request and reply (a content type, `compact`, a timeout, `ok`), and a value found
 * here is not decoded again (a call into C++ that costs several times the comparison). Values
 * longer than {@link MAX_CACHED_VALUE} bytes, such as command ids, are always decoded.
 */
const cachedValueBytes: (Buffer | undefined)[] = new Array<Buffer | undefined>(64).fill(undefined);
const cachedValues: string[] = new Array<string>(64).fill('');
const MAX_CACHED_VALUE = 24;

/** The value in `bytes[from, to)` (no blanks at either end), trimmed as nats.js trims it. */
function valueAt(bytes: Buffer, from: number, to: number): string {
  const length = to - from;
  if (length > MAX_CACHED_VALUE) return bytes.toString('utf8', from, to).trim();
  let hash = length;
  for (let index = from; index < to; index++) {
    hash = (Math.imul(hash, 31) + (bytes[index] as number)) | 0;
  }
  const slot = hash & (cachedValues.length - 1);
  const known = cachedValueBytes[slot];
  if (known?.length === length) {
    let same = true;
    for (let index = 0; index < length; index++) {
      if (known[index] !== bytes[from + index]) {
        same = false;
        break;
      }
    }
    if (same) return cachedValues[slot] as string;
  }
  const value = bytes.toString('utf8', from, to).trim();
  cachedValueBytes[slot] = Buffer.from(bytes.subarray(from, to));
  cachedValues[slot] = value;
  return value;
}

/** `key.toLowerCase()`, made once for each key looked up often (header keys are few). */
export function lowerCaseKey(key: string): string {
  let lower = lowerCase.get(key);
  if (lower === undefined) {
    lower = key.toLowerCase();
    if (lowerCase.size < MAX_LOWER_CASE) lowerCase.set(key, lower);
  }
  return lower;
}

const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;

/** Where the next `\r\n` at or after `from` starts, or -1. */
function lineEnd(bytes: Uint8Array, from: number): number {
  for (let index = from; index + 1 < bytes.length; index++) {
    if (bytes[index] === CR && bytes[index + 1] === LF) return index;
  }
  return -1;
}

/** True when `bytes[start, end)` is one of `keys` (lower-case ASCII), ignoring ASCII case. */
function isOneOf(
  bytes: Uint8Array,
  start: number,
  end: number,
  keys: readonly Uint8Array[],
): boolean {
  next: for (const key of keys) {
    if (key.length !== end - start) continue;
    for (let index = 0; index < key.length; index++) {
      const byte = bytes[start + index] as number;
      const lower = byte >= 0x41 && byte <= 0x5a ? byte | 0x20 : byte;
      if (lower !== key[index]) continue next;
    }
    return true;
  }
  return false;
}

function isBlank(byte: number): boolean {
  return byte === 0x20 || byte === 0x09;
}

const STATUS_LINE_BYTES = Buffer.from(STATUS_LINE);

function startsWithStatusLine(block: Uint8Array): boolean {
  if (block.length < STATUS_LINE_BYTES.length) return false;
  for (let index = 0; index < STATUS_LINE_BYTES.length; index++) {
    if (block[index] !== STATUS_LINE_BYTES[index]) return false;
  }
  return true;
}

/** The first value of `key` (ASCII case ignored), or `''` as nats.js' `get` answers. */
export function headerValue(lines: HeaderLines, key: string): string {
  const lower = lowerCaseKey(key);
  for (const [k, value] of lines) {
    if (k.length === lower.length && lowerCaseKey(k) === lower) return value;
  }
  return '';
}
