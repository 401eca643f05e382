import { Encoder } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { MsgpackCodec } from '../../runtime/codec/msgpack-codec.js';
import { MsgpackWriter } from '../../runtime/codec/msgpack-writer.js';
import type { CommandResult } from '../../runtime/aggregate/command.js';
import type { StoredEvent } from '../../runtime/domain/events.js';
import { encodeEnvelope, toWireEvent } from '../../runtime/event-store/commit-envelope.js';
import { toCompactResult, writeCompactResult } from '../../runtime/messaging/compact-result.js';

const library = new Encoder({ ignoreUndefined: true });

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Numbers at every boundary of MessagePack's integer and float formats. */
const numbers = [
  0,
  -0,
  1,
  127,
  128,
  255,
  256,
  65_535,
  65_536,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  -1,
  -32,
  -33,
  -128,
  -129,
  -32_768,
  -32_769,
  -(2 ** 31),
  -(2 ** 31) - 1,
  -(2 ** 53 - 1),
  0.5,
  -1.25,
  1e300,
  Number.MIN_VALUE,
  NaN,
  Infinity,
  -Infinity,
  2 ** 53,
  -(2 ** 60),
];

function value(next: () => number, depth: number): unknown {
  const pick = Math.floor(next() * (depth > 3 ? 5 : 8));
  switch (pick) {
    case 0:
      return numbers[Math.floor(next() * numbers.length)];
    case 1:
      return Math.floor(next() * 2 ** 40) - 2 ** 39;
    case 2: {
      const length = [0, 1, 31, 32, 255, 256, 70_000][Math.floor(next() * 7)] as number;
      return 'abcdefghijklmnopqrstuvwxyz0123456789-_.'.repeat(1 + length / 39).slice(0, length);
    }
    case 3:
      return [null, undefined, true, false][Math.floor(next() * 4)];
    case 4:
      return `id-${Math.floor(next() * 1e9)}`;
    case 5: {
      const size = [0, 1, 15, 16, 17][Math.floor(next() * 5)] as number;
      return Array.from({ length: size }, () => value(next, depth + 1));
    }
    default: {
      const size = [0, 1, 3, 15, 16, 20][Math.floor(next() * 6)] as number;
      const object: Record<string, unknown> = {};
      for (let index = 0; index < size; index++) object[`k${index}`] = value(next, depth + 1);
      return object;
    }
  }
}

describe('MsgpackWriter', () => {
  it('writes the same bytes as @msgpack/msgpack for plain data', () => {
    const writer = new MsgpackWriter();
    for (let seed = 1; seed <= 2_000; seed++) {
      const sample = value(random(seed), 0);
      const written = writer.encode(sample);
      expect(written, `seed ${seed}`).toBeDefined();
      expect(Buffer.from(written!).equals(library.encode(sample)), `seed ${seed}`).toBe(true);
    }
  });

  it('writes the same bytes for every integer and float boundary', () => {
    const writer = new MsgpackWriter();
    for (const number of numbers) {
      expect(Buffer.from(writer.encode(number)!).equals(library.encode(number)), `${number}`).toBe(
        true,
      );
    }
  });

  it('writes a commit envelope and a command reply as the library does', () => {
    const writer = new MsgpackWriter();
    const id = '2b0f3f9e-3c41-4f43-9c1e-6f3c2f1d8a77';
    const reply = {
      commandId: id,
      version: 7,
      events: [
        {
          type: 'Deposited',
          data: { amount: 100 },
          meta: { domain: 'bank', aggregate: 'Account', aggregateId: 'acc-1', version: 7 },
        },
      ],
      response: undefined,
      duplicate: false,
      position: 123_456,
    };
    // Twice: the second time the keys come from the writer's cache.
    for (let round = 0; round < 2; round++) {
      expect(Buffer.from(writer.encode(reply)!).equals(library.encode(reply))).toBe(true);
    }
  });

  it('leaves to the library what it does not write, so the codec encodes it the same', () => {
    const writer = new MsgpackWriter();
    const codec = new MsgpackCodec();
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    const left = [
      'café',
      { name: 'Zoë' },
      ['ok', '\ud83d\ude00'],
      'lone \ud800 surrogate',
      new Date(86_400_000),
      { at: new Date(0) },
      new Uint8Array([1, 2, 3]),
      new Point(1, 2),
    ];
    for (const sample of left) {
      expect(writer.encode(sample), JSON.stringify(sample)).toBeUndefined();
      expect(Buffer.from(codec.encode(sample)).equals(library.encode(sample))).toBe(true);
    }
  });

  it('writes as deep as the library does', () => {
    let deep: unknown = 1;
    for (let level = 0; level < 99; level++) deep = [deep];
    expect(Buffer.from(new MsgpackWriter().encode(deep)!).equals(library.encode(deep))).toBe(true);
  });

  it('fails as the library fails on what MessagePack cannot hold', () => {
    const codec = new MsgpackCodec();
    let tooDeep: unknown = 1;
    for (let level = 0; level < 100; level++) tooDeep = [tooDeep];
    for (const sample of [{ f: () => 1 }, Symbol('s'), 10n, tooDeep]) {
      expect(() => library.encode(sample)).toThrow();
      expect(() => codec.encode(sample)).toThrow();
    }
  });

  it('decodes what it wrote back to the same value', () => {
    const codec = new MsgpackCodec();
    const sample = { a: [1, -2, 3.5, 'x'.repeat(40)], b: { c: null, d: true }, e: undefined };
    expect(codec.decode(codec.encode(sample))).toEqual({
      a: [1, -2, 3.5, 'x'.repeat(40)],
      b: { c: null, d: true },
    });
  });

  it('returns bytes that stay as they were when it writes again', () => {
    const writer = new MsgpackWriter();
    const first = writer.encode({ n: 1, s: 'first' })!;
    const copy = Buffer.from(first);
    writer.encode({ n: 2, s: 'second, and longer than the first' });
    writer.encode('x'.repeat(10_000));
    expect(Buffer.from(first).equals(copy)).toBe(true);
  });

  it('writes commits and compact replies field by field as the library writes their objects', () => {
    const codec = new MsgpackCodec();
    const strings = ['c-1', 'cmd-2', 'Zoë', 'x'.repeat(40), ''];
    const pick = <T>(next: () => number, items: readonly T[]): T =>
      items[Math.floor(next() * items.length)] as T;
    const eventOf = (next: () => number): StoredEvent => {
      const commandId = pick(next, strings);
      const meta: StoredEvent['meta'] = {
        domain: 'bank',
        aggregate: 'Account',
        aggregateId: 'acc-1',
        version: Math.floor(next() * 300),
        timestamp: 1_796_597_615_045 + Math.floor(next() * 1000),
        commandId,
        correlationId: next() < 0.5 ? commandId : pick(next, strings),
        causationId: next() < 0.5 ? commandId : pick(next, strings),
      };
      if (next() < 0.3) meta.actor = pick(next, strings);
      if (next() < 0.5) meta.schemaVersion = pick(next, [1, 2, 7]);
      return {
        type: pick(next, ['Deposited', 'Opened', 'Größe']),
        data: next() < 0.1 ? undefined : value(next, 3),
        meta,
      };
    };
    for (let seed = 1; seed <= 400; seed++) {
      const next = random(seed);
      const events = Array.from({ length: pick(next, [0, 1, 2, 3]) }, () => eventOf(next));
      const commands = Array.from({ length: pick(next, [1, 2, 3]) }, () =>
        next() < 0.5
          ? { id: pick(next, strings) }
          : { id: pick(next, strings), response: value(next, 3) },
      );
      const previous = Math.floor(next() * 2 ** 40);
      const envelope = {
        v: 1,
        p: previous,
        e: events.map(toWireEvent),
        c: commands.map((record) =>
          record.response === undefined ? { i: record.id } : { i: record.id, r: record.response },
        ),
      };
      const written = encodeEnvelope(codec, previous, events, commands);
      expect(Buffer.from(written).equals(library.encode(envelope)), `commit, seed ${seed}`).toBe(
        true,
      );

      const result: CommandResult = {
        commandId: pick(next, strings),
        version: Math.floor(next() * 300),
        events,
        response: next() < 0.5 ? undefined : value(next, 3),
        duplicate: next() < 0.3,
        position: previous + 1,
      };
      const reply = codec.encodeWritten(writeCompactResult, toCompactResult, result);
      expect(
        Buffer.from(reply).equals(library.encode(toCompactResult(result))),
        `reply, seed ${seed}`,
      ).toBe(true);
    }
  });
});
