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

const leaned = new WeakSet<object>();

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
 * the connection's parser has the shape this nats.js version has; returns whether it applies.
 */
export function leanMessageArgs(nc: NatsConnection): boolean {
  const protocol = (nc as unknown as { protocol?: { parser?: unknown } }).protocol;
  const parser = protocol?.parser;
  if (typeof parser !== 'object' || parser === null) return false;
  const prototype = Object.getPrototypeOf(parser) as Partial<ParserShape> | null;
  if (prototype === null) return false;
  if (leaned.has(prototype)) return true;
  if (
    typeof prototype.processMsgArgs !== 'function' ||
    typeof prototype.processHeaderMsgArgs !== 'function' ||
    typeof prototype.fail !== 'function'
  ) {
    return false;
  }
  prototype.processMsgArgs = function (this: ParserShape, arg: Uint8Array): void {
    readMessageArgs(this, arg);
  };
  leaned.add(prototype);
  return true;
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
  const ma = parser.ma;
  if (headers) {
    if (count === 4) {
      ma.subject = argView(arg, 0);
      ma.sid = argNumber(arg, 1, undefined);
      ma.reply = undefined;
      ma.hdr = argNumber(arg, 2, MAX_64MB);
      ma.size = argNumber(arg, 3, MAX_64MB);
    } else if (count === 5) {
      ma.subject = argView(arg, 0);
      ma.sid = argNumber(arg, 1, undefined);
      ma.reply = argView(arg, 2);
      ma.hdr = argNumber(arg, 3, MAX_64MB);
      ma.size = argNumber(arg, 4, MAX_64MB);
    } else {
      throw parser.fail(arg, 'processHeaderMsgArgs Parse Error');
    }
    if (ma.sid < 0) throw parser.fail(arg, 'processHeaderMsgArgs Bad or Missing Sid Error');
    if (ma.hdr < 0 || ma.hdr > ma.size) {
      throw parser.fail(arg, 'processHeaderMsgArgs Bad or Missing Header Size Error');
    }
    if (ma.size < 0) throw parser.fail(arg, 'processHeaderMsgArgs Bad or Missing Size Error');
    return;
  }
  if (count === 3) {
    ma.subject = argView(arg, 0);
    ma.sid = argNumber(arg, 1, undefined);
    ma.reply = undefined;
    ma.size = argNumber(arg, 2, MAX_64MB);
  } else if (count === 4) {
    ma.subject = argView(arg, 0);
    ma.sid = argNumber(arg, 1, undefined);
    ma.reply = argView(arg, 2);
    ma.size = argNumber(arg, 3, MAX_64MB);
  } else {
    throw parser.fail(arg, 'processMsgArgs Parse Error');
  }
  if (ma.sid < 0) throw parser.fail(arg, 'processMsgArgs Bad or Missing Sid Error');
  if (ma.size < 0) throw parser.fail(arg, 'processMsgArgs Bad or Missing Size Error');
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
