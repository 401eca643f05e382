import { jetstreamManager } from '@nats-io/jetstream';
import { MsgHdrsImpl, headers, type Msg, type MsgHdrs } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  headerKeys,
  headerLines,
  headerValue,
  parseHeaderBlock,
  receivedHeaders,
} from '../../runtime/nats/header-lines.js';
import { connectShared, uniqueName } from '../helpers/nats.js';

const encoder = new TextEncoder();

/** The pairs nats.js' own decoding gives for a header block. */
function decodedByNats(block: string): [string, string][] {
  const h = MsgHdrsImpl.decode(encoder.encode(block));
  const pairs: [string, string][] = [];
  for (const key of h.keys()) for (const value of h.values(key)) pairs.push([key, value]);
  return pairs;
}

describe('parseHeaderBlock', () => {
  const blocks = {
    'two headers':
      'NATS/1.0\r\nContent-Type: application/msgpack\r\nJetactor-Timeout: 5000\r\n\r\n',
    'values with colons and spaces': 'NATS/1.0\r\nJetactor-Actor:  user:42 \r\nX: a: b\r\n\r\n',
    'an empty value': 'NATS/1.0\r\nJetactor-Actor:\r\n\r\n',
    'a line without a colon': 'NATS/1.0\r\nnonsense\r\nJetactor-Actor: ann\r\n\r\n',
    'UTF-8 values': 'NATS/1.0\r\nJetactor-Actor: Zoë 😀\r\n\r\n',
    'no trailing blank line': 'NATS/1.0\r\nJetactor-Actor: ann',
    'only the status line': 'NATS/1.0\r\n\r\n',
    'white space other than spaces around a value':
      'NATS/1.0\r\nJetactor-Actor: \t\u00a0 ann \u000b\f\t\r\nX:\u2028\r\n\r\n',
  };

  for (const [name, block] of Object.entries(blocks)) {
    it(`reads ${name} as nats.js decodes them, from a string or from bytes`, () => {
      expect(parseHeaderBlock(block)).toEqual(decodedByNats(block));
      const framed = encoder.encode(`xx${block}yy`);
      expect(parseHeaderBlock(framed.subarray(2, framed.length - 2))).toEqual(decodedByNats(block));
    });
  }

  it('keeps a repeated key once per value, in order', () => {
    const block = 'NATS/1.0\r\nJetactor-Actor: a\r\njetactor-actor: b\r\nOther: c\r\n\r\n';
    expect(parseHeaderBlock(block)).toEqual([
      ['Jetactor-Actor', 'a'],
      ['jetactor-actor', 'b'],
      ['Other', 'c'],
    ]);
    expect(headerValue(parseHeaderBlock(block), 'JETACTOR-ACTOR')).toBe('a');
    expect(headerValue(parseHeaderBlock(block), 'Content-Type')).toBe('');
  });

  it('reads keys it has seen before (kept as strings) and past as many as it keeps, alike', () => {
    // More distinct keys than are kept, read twice: the second reading takes the kept strings.
    const keys = Array.from({ length: 100 }, (_, i) => `Key-${i}-${'x'.repeat(i % 3)}`);
    const block = `NATS/1.0\r\n${keys.map((key, i) => `${key}: v${i}`).join('\r\n')}\r\n\r\n`;
    const first = parseHeaderBlock(block);
    const second = parseHeaderBlock(block);
    expect(first).toEqual(decodedByNats(block));
    expect(second).toEqual(first);
    // Keys of the same length and different bytes are not taken for each other.
    expect(parseHeaderBlock('NATS/1.0\r\nKey-1-x: x\r\nKey-2-x: y\r\n\r\n')).toEqual([
      ['Key-1-x', 'x'],
      ['Key-2-x', 'y'],
    ]);
    for (let i = 0; i < 100; i++) {
      expect(headerValue(second, (keys[i] as string).toUpperCase())).toBe(`v${i}`);
    }
  });
});

describe('parseHeaderBlock of values it has read before', () => {
  it('reads short values it has seen before (kept as strings), and many more of them, alike', () => {
    // Short values that repeat, many sharing lengths, more than are kept, some UTF-8 and some
    // with white space to trim, between long ones that are never kept: read three times, each
    // reading is what nats.js decodes.
    const values = [
      ...Array.from({ length: 300 }, (_, i) => `v${i}`),
      ...Array.from({ length: 40 }, (_, i) => `é${i}`),
      ...Array.from({ length: 40 }, (_, i) => `${i}\u00a0`),
      'x'.repeat(24),
      'y'.repeat(25),
      '7dcd9f05-2ad8-46a8-9e4d-fb4d4b8cfd9a',
    ];
    const blocks = values.map((value) => `NATS/1.0\r\nJetactor-Actor: ${value}\r\n\r\n`);
    for (let round = 0; round < 3; round++) {
      for (const block of round === 1 ? [...blocks].reverse() : blocks) {
        expect(parseHeaderBlock(block)).toEqual(decodedByNats(block));
      }
    }
  });
});

describe('headerLines of a received message', () => {
  let nc: Awaited<ReturnType<typeof connectShared>>;
  beforeAll(async () => {
    nc = await connectShared();
  });
  afterAll(async () => {
    await nc.close();
  });

  async function receive(h: MsgHdrs | undefined, data = 'body'): Promise<Msg> {
    const subject = uniqueName('hl');
    const sub = nc.subscribe(subject, { max: 1 });
    nc.publish(subject, data, h === undefined ? {} : { headers: h });
    for await (const msg of sub) return msg;
    throw new Error('no message');
  }

  it('gives the headers as sent, read from the received bytes', async () => {
    const h = headers();
    h.set('Content-Type', 'application/json');
    h.append('Jetactor-Actor', 'Zoë');
    h.append('Jetactor-Actor', 'second');
    const msg = await receive(h);
    expect(headerLines(msg)).toEqual([
      ['Content-Type', 'application/json'],
      ['Jetactor-Actor', 'Zoë'],
      ['Jetactor-Actor', 'second'],
    ]);
    // Read without nats.js decoding them (it keeps its decoded headers in `_headers`).
    expect((msg as unknown as { _headers?: unknown })._headers).toBeUndefined();
    // The body is untouched, and nats.js still decodes the headers itself when asked.
    expect(new TextDecoder().decode(msg.data)).toBe('body');
    expect(msg.headers?.get('Content-Type')).toBe('application/json');
  });

  it('tells a status message (a direct get of a missing message) from headers without a status', async () => {
    const h = headers();
    h.set('Nats-Sequence', '7');
    const plain = await receive(h);
    expect(receivedHeaders(plain)).toEqual({ hasStatus: false, lines: [['Nats-Sequence', '7']] });

    const stream = uniqueName('HL');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], allow_direct: true });
    try {
      const missing = await nc.request(`$JS.API.DIRECT.GET.${stream}.${stream}.none`, undefined);
      expect(receivedHeaders(missing).hasStatus).toBe(true);
      expect(missing.headers?.code).toBe(404);
    } finally {
      await jsm.streams.delete(stream);
    }
  });

  it('reads only the keys asked for, ignoring case, from the bytes and once nats.js has decoded them', async () => {
    const h = headers();
    h.set('Nats-Stream', 'S');
    h.set('nats-subject', 'a.b');
    h.set('Nats-Sequence', ' 42 ');
    h.set('Nats-Sequence-X', '1');
    h.set('Nats-Msg-Id', 'm');
    const only = headerKeys('Nats-Sequence', 'NATS-SUBJECT');
    const msg = await receive(h);
    const expected = {
      hasStatus: false,
      lines: [
        ['nats-subject', 'a.b'],
        ['Nats-Sequence', '42'],
      ],
    };
    expect(receivedHeaders(msg, only)).toEqual(expected);
    expect(msg.headers?.get('Nats-Stream')).toBe('S');
    expect(receivedHeaders(msg, only)).toEqual(expected);
    expect(receivedHeaders(await receive(undefined), only)).toEqual({
      hasStatus: false,
      lines: [],
    });
  });

  it('gives the same once nats.js has decoded them, and none for a message without headers', async () => {
    const h = headers();
    h.set('Jetactor-Timeout', '250');
    const msg = await receive(h);
    expect(msg.headers?.get('Jetactor-Timeout')).toBe('250');
    expect(headerLines(msg)).toEqual([['Jetactor-Timeout', '250']]);
    expect(headerLines(await receive(undefined))).toEqual([]);
  });
});
