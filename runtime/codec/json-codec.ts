import type { Codec } from './codec.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON as UTF-8 text: what the `nats` CLI and curl-minded tools send. `undefined` fields are
 * dropped; binary data does not survive (use msgpack for that).
 *
 * `encode` may return a slice of Node's shared buffer pool (a `Buffer`): to keep many encoded
 * values for long, copy them (`new Uint8Array(bytes)`), or each keeps its 8 KiB pool block alive.
 */
export class JsonCodec implements Codec {
  readonly contentType = 'application/json';

  encode(value: unknown): Uint8Array {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`${String(value)} has no JSON form`);
    // A slice of Node's buffer pool: TextEncoder makes a new ArrayBuffer each time (~0.5 µs).
    return Buffer.from(text, 'utf8');
  }

  decode(bytes: Uint8Array): unknown {
    return JSON.parse(decoder.decode(bytes));
  }
}
