import { Decoder, Encoder, ExtData } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MsgpackCodec } from '../../runtime/codec/msgpack-codec.js';
import { MsgpackReader, NOT_READ } from '../../runtime/codec/msgpack-reader.js';

const encoder = new Encoder();
const decoder = new Decoder();

/** What the library decodes, or the error it throws. */
function byLibrary(bytes: Uint8Array): { value: unknown } | { error: unknown } {
  try {
    return { value: decoder.decode(bytes) };
  } catch (error) {
    return { error };
  }
}

/** True when `value` holds a map with a `__proto__` key, at any depth. */
function hasProtoKey(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasProtoKey);
  if (typeof value !== 'object' || value === null) return false;
  return Object.keys(value).some(
    (key) => key === '__proto__' || hasProtoKey((value as Record<string, unknown>)[key]),
  );
}

/** Plain data as the runtime's envelopes and replies hold it, strings of every size and script. */
const plain = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -0, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 60)),
    fc.integer({ min: -(2 ** 31) - 5, max: 2 ** 32 + 5 }),
    fc.maxSafeInteger(),
    fc.double(),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.string({ minLength: 10, maxLength: 300 }),
    fc.uuid(),
    fc.array(tie('value'), { maxLength: 20 }),
    fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 12 }), tie('value'), {
      maxKeys: 20,
    }),
  ),
})).value;

describe('MsgpackReader', () => {
  it('reads what the library reads, for plain data of every shape', () => {
    const reader = new MsgpackReader();
    fc.assert(
      fc.property(plain, (value) => {
        const bytes = encoder.encode(value);
        const read = reader.decode(bytes);
        if (read === NOT_READ) {
          // The one shape of plain data it leaves to the library, by design (see below).
          expect(hasProtoKey(value)).toBe(true);
          return;
        }
        expect(read).toStrictEqual(decoder.decode(bytes));
      }),
      { numRuns: 2_000 },
    );
  });

  it('reads the numbers of every MessagePack format as the library does', () => {
    const reader = new MsgpackReader();
    const formats = [
      [0xca, 0x3f, 0xc0, 0, 0], // float 32
      [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // uint 64 beyond 2^53
      [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 1], // int 64, most negative
      [0xd0, 0x80],
      [0xd1, 0x80, 0],
      [0xd2, 0x80, 0, 0, 0],
      [0xcc, 0xff],
      [0xcd, 0xff, 0xff],
      [0xce, 0xff, 0xff, 0xff, 0xff],
    ];
    for (const format of formats) {
      const bytes = Uint8Array.from(format);
      expect(reader.decode(bytes)).toStrictEqual(decoder.decode(bytes));
    }
  });

  it('leaves to the library what it does not read, and never returns what the library would not', () => {
    const reader = new MsgpackReader();
    const left = [
      encoder.encode(new Uint8Array([1, 2, 3])), // binary
      encoder.encode(new Date(0)), // timestamp extension
      encoder.encode(new ExtData(1, new Uint8Array([1]))),
      Uint8Array.from([0x81, 0x01, 0x02]), // a number key
      Uint8Array.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x01]),
      Uint8Array.from([0xa2, 0xc3, 0x28]), // invalid UTF-8
      encoder.encode(`\ufeff${'é'.repeat(150)}`), // a BOM the library's TextDecoder drops
      Uint8Array.from([0x92, 0x01]), // truncated
      Uint8Array.from([0x01, 0x02]), // bytes after the value
      Uint8Array.from([0xc1]),
      Uint8Array.from([]),
      Uint8Array.from([...Array.from({ length: 101 }, () => 0x91), 0x01]), // deep
    ];
    for (const bytes of left) expect(reader.decode(bytes)).toBe(NOT_READ);
    const short = encoder.encode(`\ufeff${'é'.repeat(50)}`);
    expect(reader.decode(short)).toBe(decoder.decode(short));
    // Any bytes at all: a value only where the library gives the same value.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const read = reader.decode(bytes);
        if (read === NOT_READ) return;
        expect(byLibrary(bytes)).toStrictEqual({ value: read });
      }),
      { numRuns: 20_000 },
    );
  });

  it('gives short strings out again from its table, and tells apart those that share a slot', () => {
    const reader = new MsgpackReader();
    const first = reader.decode(encoder.encode({ type: 'Deposited' })) as { type: string };
    const again = reader.decode(encoder.encode({ type: 'Deposited' })) as { type: string };
    expect(again).toEqual({ type: 'Deposited' });
    const words = Array.from({ length: 5_000 }, (_, index) => `w${index}`);
    const read = reader.decode(encoder.encode(words));
    expect(read).toEqual(words);
    expect(first.type).toBe('Deposited');
  });
});

describe('MsgpackCodec.decode', () => {
  it('decodes with the library what the reader leaves, with the library errors', () => {
    const codec = new MsgpackCodec();
    expect(codec.decode(encoder.encode({ at: new Date(5) }))).toEqual({ at: new Date(5) });
    expect(codec.decode(encoder.encode({ bytes: new Uint8Array([7]) }))).toEqual({
      bytes: new Uint8Array([7]),
    });
    expect(() => codec.decode(Uint8Array.from([0x92, 0x01]))).toThrow(RangeError);
    expect(() => codec.decode(Uint8Array.from([0x01, 0x02]))).toThrow(/Extra/);
  });
});
