import { Decoder, Encoder } from '@msgpack/msgpack';
import type { Codec } from './codec.js';
import { MsgpackReader, NOT_READ } from './msgpack-reader.js';
import { MsgpackWriter } from './msgpack-writer.js';

/**
 * MessagePack, the default codec: compact, fast, and keeps binary data. `undefined` fields are
 * dropped, as in JSON.
 *
 * `encode` may return a slice of Node's shared buffer pool (a `Buffer`): to keep many encoded
 * values for long, copy them (`new Uint8Array(bytes)`), or each keeps its 8 KiB pool block alive.
 */
export class MsgpackCodec implements Codec {
  readonly contentType = 'application/msgpack';
  readonly #encoder = new Encoder({ ignoreUndefined: true });
  readonly #decoder = new Decoder();
  /** Plain data, the runtime's envelopes and replies: the same bytes as the library, faster. */
  readonly #writer = new MsgpackWriter();
  /** The same values as the library's decoder, faster; anything unusual is left to it. */
  readonly #reader = new MsgpackReader();

  encode(value: unknown): Uint8Array {
    return this.#writer.encode(value) ?? this.#encoder.encode(value);
  }

  /**
   * A value of a shape the runtime knows, written piece by piece by `write(writer, of)` (see
   * {@link MsgpackWriter.write}) without building it as objects first; when `write` meets
   * something it leaves to the library, `value(of)` is encoded instead: the same bytes either way.
   */
  encodeWritten<T>(
    write: (writer: MsgpackWriter, of: T) => boolean,
    value: (of: T) => unknown,
    of: T,
  ): Uint8Array {
    return this.#writer.write(write, of) ?? this.encode(value(of));
  }

  decode(bytes: Uint8Array): unknown {
    const value = this.#reader.decode(bytes);
    return value === NOT_READ ? this.#decoder.decode(bytes) : value;
  }
}

/**
 * A value of a shape the runtime knows, in `codec`: written piece by piece by `write` when the
 * codec is MessagePack ({@link MsgpackCodec.encodeWritten}), else `value(of)` encoded.
 */
export function encodeShaped<T>(
  codec: Codec,
  write: (writer: MsgpackWriter, of: T) => boolean,
  value: (of: T) => unknown,
  of: T,
): Uint8Array {
  return codec instanceof MsgpackCodec
    ? codec.encodeWritten(write, value, of)
    : codec.encode(value(of));
}
