import type { NatsConnection } from '@nats-io/transport-node';

/** What nats.js' `Parser` holds of the message whose arguments it reads (not public API). */
interface MessageArgs {
  subject?: Uint8Array;
  reply?: Uint8Array | undefined;
  sid: number;
  hdr: number;
  size: number;
}

/** The parts of nats.js' `Parser` this reads and replaces (not public API). */
interface ParserShape {
  /** -1 for `MSG`, 0 or more for `HMSG`. */
  hdr: number;
  ma: MessageArgs;
  fail(data: Uint8Array, label?: string): Error;
  processMsgArgs(arg: Uint8Array): void;
  processHeaderMsgArgs(arg: Uint8Array): void;
}

/** Parser prototypes looked at already, and those of them left alone. */
const leaned = new WeakSet<object>();
const refused = new WeakSet<object>();

/**
 * Where the arguments being read start and end (`[start, end, start, end, …]`, the first five):
 * one array for every message, not one each.
 */
const bounds = new Int32Array(10);

/** nats.js' bound on header and payload sizes in the arguments it reads. */
const MAX_64MB = 64 * 1024 * 1024;

const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const NL = 0x0a;
const ZERO = 0x30;
const NINE = 0x39;

/**
 * nats.js reads the arguments of every message it receives (`MSG <subject> <sid> [reply] <size>`,
 * `HMSG … <hdr> <size>`) by making a view (`subarray`, a Node `Buffer` each) of every argument
 * and an array of them, then parsing the numbers from their views: about a fifth of what a node
 * allocates per command end to end, where each command is two messages received. This has nats.js'
 * parser read them in place: views of the subject and the reply only, as before, and the numbers
 * parsed from the bytes where they are. Same results, same errors, same messages.
 *
 * It changes nats.js' `Parser` class, so every connection of this process reads arguments this
 * way (its prototype is shared, and each reconnection makes a new parser). Once, and only when
 * the connection's parser has the shape this nats.js version has and reads {@link SAMPLES}
 * exactly as this reader does; returns whether it applies.
 */
export function leanMessageArgs(nc: NatsConnection): boolean {
  const protocol = (nc as unknown as { protocol?: { parser?: unknown } }).protocol;
  const parser = protocol?.parser;
  if (typeof parser !== 'object' || parser === null) return false;
  const prototype = Object.getPrototypeOf(parser) as Partial<ParserShape> | null;
  if (prototype === null) return false;
  if (leaned.has(prototype)) return !refused.has(prototype);
  if (
    typeof prototype.processMsgArgs !== 'function' ||
    typeof prototype.processHeaderMsgArgs !== 'function' ||
    typeof prototype.fail !== 'function' ||
    !readsAsNatsJs(prototype as ParserShape)
  ) {
    // Refused once, refused for good: nats.js keeps reading the arguments itself.
    leaned.add(prototype);
    refused.add(prototype);
    return false;
  }
  prototype.processMsgArgs = function (this: ParserShape, arg: Uint8Array): void {
    readMessageArgs(this, arg);
  };
  leaned.add(prototype);
  return true;
}

/**
 * Argument lines, as `MSG` (false) or `HMSG` (true) arguments, that nats.js' reader and this one
 * must read alike before this one is used: the usual ones, and ones nats.js refuses.
 */
const SAMPLES: readonly (readonly [string, boolean])[] = [
  ['jetactor.evt.bank.Account.acc-1 7 151', false],
  ['_INBOX.a1b2.42 3 _INBOX.r.1 151', false],
  ['jetactor.cmd.bank.Account.acc-1.deposit 1 _INBOX.x.2 120 180', true],
  ['a 12 80 80', true],
  [' a\t1  2\r', false],
  ['a 1', false],
  ['a x 3', false],
  ['a 1 2 3 4', false],
  ['a 1234567890123456 3', false],
  ['a 1 67108865', false],
  ['a 1 5 4', true],
  ['a 1 b 4 4 4', true],
];

/**
 * True when `readMessageArgs` reads {@link SAMPLES} exactly as `prototype`'s own reader does:
 * every property of the message arguments, and the error of each line it refuses. Whatever a
 * later nats.js changes in how it reads or what it keeps, the change is not made then.
 */
function readsAsNatsJs(prototype: ParserShape): boolean {
  const Parser = prototype.constructor as new (dispatcher: unknown) => ParserShape;
  const read = (
    reader: (parser: ParserShape, arg: Uint8Array) => void,
    text: string,
    hdr: boolean,
  ) => {
    const parser = new Parser({ push: () => undefined });
    parser.hdr = hdr ? 0 : -1;
    parser.ma = { sid: -1, hdr: -1, size: -1 };
    try {
      reader(parser, Buffer.from(text, 'utf8'));
    } catch (error) {
      return `error: ${error instanceof Error ? error.message : String(error)}`;
    }
    return JSON.stringify(parser.ma, (_key, value: unknown) =>
      value instanceof Uint8Array ? `bytes: ${Buffer.from(value).toString('utf8')}` : value,
    );
  };
  try {
    for (const [text, hdr] of SAMPLES) {
      const theirs = read((parser, arg) => prototype.processMsgArgs.call(parser, arg), text, hdr);
      const ours = read(readMessageArgs, text, hdr);
      if (ours !== theirs) return false;
    }
    return true;
  } catch {
    // A parser that cannot be made this way is not the one this was written for.
    return false;
  }
}

/**
 * What nats.js' `processMsgArgs` (and `processHeaderMsgArgs`, for `HMSG`) does, without a view per
 * argument: splits `arg` at spaces, tabs and line ends, and sets the parser's message arguments.
 */
function readMessageArgs(parser: ParserShape, arg: Uint8Array): void {
  const headers = parser.hdr >= 0;
  // Where the first five arguments start and end go to `bounds`; more than five is an error in
  // either form.
  let count = 0;
  let start = -1;
  const length = arg.length;
  for (let at = 0; at <= length; at++) {
    const byte = at < length ? (arg[at] as number) : SPACE;
    if (byte === SPACE || byte === TAB || byte === CR || byte === NL) {
      if (start < 0) continue;
      if (count < 5) {
        bounds[2 * count] = start;
        bounds[2 * count + 1] = at;
      }
      count += 1;
      start = -1;
    } else if (start < 0) {
      start = at;
    }
  }
  // `<subject> <sid> [reply] [hdr] <size>`: nats.js' messages name the reader that refused.
  const name = headers ? 'processHeaderMsgArgs' : 'processMsgArgs';
  const least = headers ? 4 : 3;
  if (count !== least && count !== least + 1) throw parser.fail(arg, `${name} Parse Error`);
  const withReply = count === least + 1;
  const ma = parser.ma;
  ma.subject = argView(arg, 0);
  ma.sid = argNumber(arg, 1, undefined);
  ma.reply = withReply ? argView(arg, 2) : undefined;
  let next = withReply ? 3 : 2;
  if (headers) ma.hdr = argNumber(arg, next++, MAX_64MB);
  ma.size = argNumber(arg, next, MAX_64MB);
  if (ma.sid < 0) throw parser.fail(arg, `${name} Bad or Missing Sid Error`);
  if (headers && (ma.hdr < 0 || ma.hdr > ma.size)) {
    throw parser.fail(arg, `${name} Bad or Missing Header Size Error`);
  }
  if (ma.size < 0) throw parser.fail(arg, `${name} Bad or Missing Size Error`);
}

/** A view of argument `index` of `arg`, as `readMessageArgs` found it. */
function argView(arg: Uint8Array, index: number): Uint8Array {
  return arg.subarray(bounds[2 * index], bounds[2 * index + 1]);
}

/** Argument `index` of `arg` as a number, as nats.js' `protoParseInt` reads it. */
function argNumber(arg: Uint8Array, index: number, max: number | undefined): number {
  return parseNumber(arg, bounds[2 * index] as number, bounds[2 * index + 1] as number, max);
}

/**
 * nats.js' `protoParseInt` on `bytes[start, end)`: the decimal number, or -1 when it is empty,
 * longer than 15 digits, not all digits, or above `max`.
 */
function parseNumber(
  bytes: Uint8Array,
  start: number,
  end: number,
  max: number | undefined,
): number {
  if (end === start || end - start > 15) return -1;
  let value = 0;
  for (let at = start; at < end; at++) {
    const byte = bytes[at] as number;
    if (byte < ZERO || byte > NINE) return -1;
    value = value * 10 + (byte - ZERO);
  }
  return max !== undefined && value > max ? -1 : value;
}
