/** Turns values into bytes and back. The runtime's envelopes and payloads go through one. */
export interface Codec {
  /** MIME type written in the `Content-Type` header, e.g. `application/msgpack`. */
  readonly contentType: string;
  /** Encodes a value; throws on values the format cannot carry. */
  encode(value: unknown): Uint8Array;
  /** Decodes bytes; throws on bytes that are not in the format. */
  decode(bytes: Uint8Array): unknown;
}
