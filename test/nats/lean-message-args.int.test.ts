import { headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leanMessageArgs } from '../../runtime/nats/lean-message-args.js';
import { connectShared, echoMessages, uniqueName } from '../helpers/nats.js';

interface ParserLike {
  hdr: number;
  ma: { subject?: Uint8Array; reply?: Uint8Array; sid: number; hdr: number; size: number };
  processMsgArgs: ArgsReader;
}

type ArgsReader = (this: ParserLike, arg: Uint8Array) => void;

const utf8 = new TextDecoder();

/** What reading `text` as the arguments of a `MSG` (or, with `headers`, an `HMSG`) gives. */
function outcome(
  Parser: new (dispatcher: unknown) => ParserLike,
  read: ArgsReader,
  text: string,
  withHeaders: boolean,
): unknown {
  const parser = new Parser({ push: () => undefined });
  parser.hdr = withHeaders ? 0 : -1;
  parser.ma = { sid: -1, hdr: -1, size: -1 };
  // A view into a larger buffer, as the parser's arguments are.
  const bytes = Buffer.from(`##${text}##`, 'utf8');
  const arg = bytes.subarray(2, bytes.length - 2);
  try {
    read.call(parser, arg);
  } catch (error) {
    return { error: (error as Error).message };
  }
  const { subject, reply, sid, hdr, size } = parser.ma;
  return {
    subject: subject === undefined ? undefined : utf8.decode(subject),
    reply: reply === undefined ? undefined : utf8.decode(reply),
    subjectIsView: subject?.buffer === arg.buffer,
    sid,
    hdr,
    size,
  };
}

/** A small seeded generator, so a failing case can be run again. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('leanMessageArgs (real nats-server)', () => {
  let nc: NatsConnection;
  let Parser: new (dispatcher: unknown) => ParserLike;
  /** nats.js' own reader, taken before the change. */
  let original: ArgsReader;

  beforeAll(async () => {
    nc = await connectShared();
    const parser = (nc as unknown as { protocol: { parser: ParserLike } }).protocol.parser;
    const prototype = Object.getPrototypeOf(parser) as ParserLike & {
      constructor: new (dispatcher: unknown) => ParserLike;
    };
    Parser = prototype.constructor;
    original = prototype.processMsgArgs;
  });
  afterAll(async () => {
    await nc.close();
  });

  it('applies to the connections of this nats.js version, once', () => {
    // Fails when a nats.js upgrade changes the shape: arguments are then read by nats.js again.
    expect(leanMessageArgs(nc)).toBe(true);
    const prototype = Parser.prototype as ParserLike;
    const lean = prototype.processMsgArgs;
    expect(lean).not.toBe(original);
    expect(leanMessageArgs(nc)).toBe(true);
    expect(prototype.processMsgArgs).toBe(lean);
  });

  it('leaves an object without that shape alone', () => {
    expect(leanMessageArgs({} as NatsConnection)).toBe(false);
    expect(leanMessageArgs({ protocol: {} } as unknown as NatsConnection)).toBe(false);
    expect(
      leanMessageArgs({ protocol: { parser: Object.create(null) } } as unknown as NatsConnection),
    ).toBe(false);
  });

  it('leaves alone a parser whose own reader reads otherwise (a later nats.js, say), for good', () => {
    class OtherParser {
      hdr = -1;
      ma: Record<string, unknown> = {};
      constructor(_dispatcher: unknown) {}
      fail(_data: Uint8Array, label = ''): Error {
        return new Error(label);
      }
      processHeaderMsgArgs(): void {}
      // Keeps one more property than the reader this runtime replaces it with would.
      processMsgArgs(arg: Uint8Array): void {
        this.ma = { ...this.ma, subject: arg, sid: 1, size: 1, seen: arg.length };
      }
    }
    const prototype = OtherParser.prototype as { processMsgArgs: unknown };
    const original = prototype.processMsgArgs;
    const other = { protocol: { parser: new OtherParser(undefined) } } as unknown as NatsConnection;
    expect(leanMessageArgs(other)).toBe(false);
    expect(prototype.processMsgArgs).toBe(original);
    expect(leanMessageArgs(other)).toBe(false);
  });

  it('reads arguments as nats.js does, malformed ones with the same errors', () => {
    leanMessageArgs(nc);
    const lean = (Parser.prototype as ParserLike).processMsgArgs;
    const cases: [string, boolean][] = [
      ['events.bank.Account.acc-1 7 151', false],
      ['_INBOX.abc.42 3 _INBOX.r.1 151', false],
      ['cmd.bank.Account.acc-1.deposit 1 _INBOX.x.2 120 180', true],
      ['zoë.😀 12 80 80', true],
      ['  a\t1   \r\n2 ', false],
      ['a 1 2 3 4', false],
      ['a 1', false],
      ['', false],
      ['a x 3', false],
      ['a -1 3', false],
      ['a 1 1234567890123456', false],
      ['a 123456789012345 3', false],
      ['a 1234567890123456 3', false],
      ['a 1 67108864', false],
      ['a 1 67108865', false],
      ['a 1 b 999999999999999', false],
      ['a 1 5 4', true],
      ['a 1 b 4 4', true],
      ['a 1 b 4 4 4', true],
      ['a 1 4', true],
      ['a 1 b x 4', true],
      ['a 1 b 4 67108865', true],
    ];
    for (const [text, withHeaders] of cases) {
      expect(outcome(Parser, lean, text, withHeaders), text).toEqual(
        outcome(Parser, original, text, withHeaders),
      );
    }
    // And random ones: tokens of digits, letters and signs, separated by every kind of space.
    const next = random(7);
    const pick = (options: string): string => options[Math.floor(next() * options.length)] ?? '';
    for (let index = 0; index < 3000; index++) {
      const tokens: string[] = [];
      const count = Math.floor(next() * 7);
      for (let token = 0; token < count; token++) {
        let text = '';
        const length = Math.floor(next() * 18);
        for (let at = 0; at < length; at++) text += pick(next() < 0.7 ? '0123456789' : 'ab.-_');
        tokens.push(text);
      }
      let text = pick(['', ' ', '\t'].join(''));
      for (const token of tokens) text += token + pick(' \t\r\n') + (next() < 0.2 ? ' ' : '');
      const withHeaders = next() < 0.5;
      expect(outcome(Parser, lean, text, withHeaders), JSON.stringify(text)).toEqual(
        outcome(Parser, original, text, withHeaders),
      );
    }
  });

  it('still delivers messages with and without headers, replies and UTF-8 subjects', async () => {
    leanMessageArgs(nc);
    const subject = `${uniqueName('lean')}.zoë`;
    const { received, done } = echoMessages(nc, subject, 3);
    await nc.flush();
    nc.publish(`${subject}.plain`, 'one');
    const h = headers();
    h.set('Jetactor-Test', 'two');
    nc.publish(`${subject}.headers`, 'two', { headers: h });
    const reply = await nc.request(`${subject}.request`, 'three', { timeout: 5_000 });
    await done;
    expect(
      received.map((msg) => [
        msg.subject,
        utf8.decode(msg.data),
        msg.headers?.get('Jetactor-Test') ?? null,
        msg.reply === undefined || msg.reply === '' ? null : 'has reply',
      ]),
    ).toEqual([
      [`${subject}.plain`, 'one', null, null],
      [`${subject}.headers`, 'two', 'two', null],
      [`${subject}.request`, 'three', null, 'has reply'],
    ]);
    expect(utf8.decode(reply.data)).toBe('re: three');
  });
});
