import { headers, Match, type MsgHdrsImpl } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { EncodedHeaders } from '../../runtime/nats/encoded-headers.js';

const decoder = new TextDecoder();

describe('encoded headers', () => {
  it('encode to the same bytes as nats.js headers with the same values', () => {
    const reference = headers();
    reference.set('Nats-Msg-Id', 'Account.acc-1.c-1');
    reference.set('Nats-Expected-Last-Subject-Sequence', '42');
    const encoded = new EncodedHeaders([
      ['Nats-Msg-Id', 'Account.acc-1.c-1'],
      ['Nats-Expected-Last-Subject-Sequence', '42'],
    ]);
    expect(decoder.decode(encoded.encode())).toBe(
      decoder.decode((reference as MsgHdrsImpl).encode()),
    );
  });

  it('encode UTF-8 values, trimmed values, repeated keys, more keys than are kept and large blocks, as nats.js does', () => {
    const cases: [string, string][][] = [
      [['Jetactor-Actor', '  Zoë 😀 ']],
      // Printable ASCII (written byte by byte), then what takes the general way after some of it
      // was written: a tab, a space or a non-ASCII letter at the end, a tab inside, nothing.
      [
        ['Jetactor-Command-Id', 'c-1 two ~!'],
        ['Jetactor-Actor', 'ann\t'],
        ['Jetactor-Actor', '\tbob'],
        ['Jetactor-Actor', 'carl '],
        ['Jetactor-Actor', 'dorothé'],
        ['Jetactor-Actor', 'e\tf'],
        ['Jetactor-Actor', ''],
        ['Jetactor-Actor', '\u007f'],
      ],
      [
        ['Jetactor-Actor', 'a'],
        ['Jetactor-Actor', 'b'],
      ],
      Array.from({ length: 80 }, (_, i) => [`Key-${i}`, `value ${i} é`] as [string, string]),
      // Larger than the buffer blocks are written in first.
      [
        ['Jetactor-Actor', 'Zoë '.repeat(2_000)],
        ['Nats-Msg-Id', 'x'.repeat(5_000)],
      ],
    ];
    for (const entries of cases) {
      const reference = headers();
      for (const [key, value] of entries) reference.append(key, value);
      expect(decoder.decode(new EncodedHeaders(entries).encode())).toBe(
        decoder.decode((reference as MsgHdrsImpl).encode()),
      );
    }
  });

  it('read like the headers they were built from', () => {
    const h = new EncodedHeaders([
      ['Content-Type', 'application/msgpack'],
      ['Jetactor-Command-Id', ' c-7 '],
    ]);
    expect(h.get('Jetactor-Command-Id')).toBe('c-7');
    expect(h.get('content-type', Match.IgnoreCase)).toBe('application/msgpack');
    expect(h.has('Jetactor-Actor')).toBe(false);
    expect(h.keys()).toEqual(['Content-Type', 'Jetactor-Command-Id']);
    expect(h.hasError).toBe(false);
    expect([...h].map(([key]) => key)).toEqual(['Content-Type', 'Jetactor-Command-Id']);
  });

  it('encode what was changed after they were built', () => {
    const h = new EncodedHeaders([['Nats-Msg-Id', 'a']]);
    h.set('Nats-Msg-Id', 'b');
    h.append('Jetactor-Actor', 'ann');
    const text = decoder.decode(h.encode());
    expect(text).toContain('Nats-Msg-Id: b\r\n');
    expect(text).toContain('Jetactor-Actor: ann\r\n');
    expect(text).not.toContain('Nats-Msg-Id: a');
  });

  it('refuse a value with a line break, as nats.js does', () => {
    for (const value of ['a\r\nEvil: 1', 'a\n', '\rb', 'ab\r']) {
      expect(() => new EncodedHeaders([['Nats-Msg-Id', value]])).toThrow(/line break/);
      expect(() => headers().append('Nats-Msg-Id', value)).toThrow();
    }
  });
});
