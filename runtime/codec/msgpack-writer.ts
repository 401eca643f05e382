/**
 * A MessagePack writer for plain data (null, booleans, numbers, ASCII strings, arrays and plain
 * objects) that writes exactly the bytes `@msgpack/msgpack`'s `Encoder({ ignoreUndefined: true })`
 * writes for the same value, faster: object keys are encoded once and kept, strings are copied
 * byte by byte, and the result is a slice of Node's buffer pool (a `Buffer`) rather than a new
 * `ArrayBuffer`.
 *
 * Anything else (a string with a character beyond ASCII, a `Date`, a typed array, a class
 * instance, a `bigint`, a function, nesting deeper than the library allows) makes
 * {@link MsgpackWriter.encode} return `undefined`, and the caller encodes the value with the
 * library instead, so the output never differs.
 */
export class MsgpackWriter {
  #bytes = new Uint8Array(2048);
  #view = new DataView(this.#bytes.buffer);
  #pos = 0;
  /** Encoded object keys (header and UTF-8), by key. */
  readonly #keys = new Map<string, Uint8Array>();

  /** The encoded value, or `undefined` when it holds something this writer leaves to the library. */
  encode(value: unknown): Uint8Array | undefined {
    this.#pos = 0;
    if (!this.#value(value, 1)) return undefined;
    return this.#result();
  }

  /**
   * A value written piece by piece, for shapes the runtime knows (a commit, a reply):
   * `write(this, of)` calls {@link MsgpackWriter.mapHeader}, {@link MsgpackWriter.arrayHeader},
   * {@link MsgpackWriter.key} and {@link MsgpackWriter.item} in the order the library would
   * write the same value, and returns false as soon as one of them does (something left to the
   * library); the result is then `undefined`, as {@link MsgpackWriter.encode}'s.
   */
  write<T>(write: (writer: MsgpackWriter, of: T) => boolean, of: T): Uint8Array | undefined {
    this.#pos = 0;
    if (!write(this, of)) return undefined;
    return this.#result();
  }

  /** What was written: a slice of Node's shared pool (a new ArrayBuffer of its own costs ~0.5 µs). */
  #result(): Uint8Array {
    const encoded = Buffer.allocUnsafe(this.#pos);
    encoded.set(this.#bytes.subarray(0, this.#pos));
    return encoded;
  }

  /** The header of a map of `size` entries (see {@link MsgpackWriter.write}). */
  mapHeader(size: number): void {
    if (size < 16) this.#byte(0x80 + size);
    else if (size < 0x10000) this.#u8u16(0xde, size);
    else this.#u8u32(0xdf, size);
  }

  /** The header of an array of `size` items (see {@link MsgpackWriter.write}). */
  arrayHeader(size: number): void {
    if (size < 16) this.#byte(0x90 + size);
    else if (size < 0x10000) this.#u8u16(0xdc, size);
    else this.#u8u32(0xdd, size);
  }

  /** A map key; false when the library must write it (see {@link MsgpackWriter.write}). */
  key(key: string): boolean {
    return this.#key(key);
  }

  /**
   * Any value at nesting `depth` (1 for the value written, 2 for what it holds…), as
   * {@link MsgpackWriter.encode} writes it; false when the library must.
   */
  item(value: unknown, depth: number): boolean {
    return this.#value(value, depth);
  }

  #value(value: unknown, depth: number): boolean {
    // The library's limit: it throws deeper than this; let it say so.
    if (depth > 100) return false;
    switch (typeof value) {
      case 'string':
        return this.#string(value);
      case 'number':
        this.#number(value);
        return true;
      case 'boolean':
        this.#byte(value ? 0xc3 : 0xc2);
        return true;
      case 'undefined':
        this.#byte(0xc0);
        return true;
      case 'object':
        if (value === null) {
          this.#byte(0xc0);
          return true;
        }
        if (Array.isArray(value)) return this.#array(value, depth);
        {
          const prototype: unknown = Object.getPrototypeOf(value);
          if (prototype !== Object.prototype && prototype !== null) return false;
        }
        return this.#map(value as Record<string, unknown>, depth);
      default:
        return false;
    }
  }

  #array(items: readonly unknown[], depth: number): boolean {
    const size = items.length;
    this.arrayHeader(size);
    for (let index = 0; index < size; index++) {
      if (!this.#value(items[index], depth + 1)) return false;
    }
    return true;
  }

  #map(object: Record<string, unknown>, depth: number): boolean {
    // `for in` with `hasOwn` visits the keys `Object.keys` gives, in its order, without making
    // an array of them (a third of what encoding a commit allocated).
    let size = 0;
    for (const key in object) if (Object.hasOwn(object, key) && object[key] !== undefined) size++;
    this.mapHeader(size);
    for (const key in object) {
      if (!Object.hasOwn(object, key)) continue;
      const item = object[key];
      if (item === undefined) continue;
      if (!this.#key(key) || !this.#value(item, depth + 1)) return false;
    }
    return true;
  }

  #key(key: string): boolean {
    const encoded = this.#keys.get(key);
    if (encoded === undefined) {
      const start = this.#pos;
      if (!this.#string(key)) return false;
      // Keys are a program's field names; a map of data-made keys would only grow.
      if (this.#keys.size < 4096) this.#keys.set(key, this.#bytes.slice(start, this.#pos));
      return true;
    }
    this.#reserve(encoded.length);
    const bytes = this.#bytes;
    let pos = this.#pos;
    for (let index = 0; index < encoded.length; index++) bytes[pos++] = encoded[index] as number;
    this.#pos = pos;
    return true;
  }

  /**
   * ASCII only (a byte per character). The library writes lone surrogates one way below its
   * TextEncoder threshold and another above it; other strings are left to it.
   */
  #string(text: string): boolean {
    const length = text.length;
    if (length >= 0x100000000) return false;
    const header = length < 32 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
    this.#reserve(header + length);
    const bytes = this.#bytes;
    const start = this.#pos + header;
    for (let index = 0; index < length; index++) {
      const code = text.charCodeAt(index);
      if (code >= 0x80) return false;
      bytes[start + index] = code;
    }
    this.#stringHeader(length);
    this.#pos = start + length;
    return true;
  }

  #stringHeader(byteLength: number): void {
    if (byteLength < 32) this.#byte(0xa0 + byteLength);
    else if (byteLength < 0x100) {
      this.#byte(0xd9);
      this.#byte(byteLength);
    } else if (byteLength < 0x10000) this.#u8u16(0xda, byteLength);
    else this.#u8u32(0xdb, byteLength);
  }

  #number(value: number): void {
    if (Number.isSafeInteger(value)) {
      if (value >= 0) {
        if (value < 0x80) this.#byte(value);
        else if (value < 0x100) {
          this.#byte(0xcc);
          this.#byte(value);
        } else if (value < 0x10000) this.#u8u16(0xcd, value);
        else if (value < 0x100000000) this.#u8u32(0xce, value);
        else {
          this.#reserve(9);
          this.#bytes[this.#pos] = 0xcf;
          this.#view.setUint32(this.#pos + 1, Math.floor(value / 0x100000000));
          this.#view.setUint32(this.#pos + 5, value >>> 0);
          this.#pos += 9;
        }
      } else if (value >= -0x20) this.#byte(0xe0 | (value + 0x20));
      else if (value >= -0x80) {
        this.#byte(0xd0);
        this.#byte(value & 0xff);
      } else if (value >= -0x8000) {
        this.#reserve(3);
        this.#bytes[this.#pos] = 0xd1;
        this.#view.setInt16(this.#pos + 1, value);
        this.#pos += 3;
      } else if (value >= -0x80000000) {
        this.#reserve(5);
        this.#bytes[this.#pos] = 0xd2;
        this.#view.setInt32(this.#pos + 1, value);
        this.#pos += 5;
      } else {
        // As the library writes it: the high word floored, both words taken modulo 2^32.
        this.#reserve(9);
        this.#bytes[this.#pos] = 0xd3;
        this.#view.setUint32(this.#pos + 1, Math.floor(value / 0x100000000));
        this.#view.setUint32(this.#pos + 5, value);
        this.#pos += 9;
      }
      return;
    }
    this.#reserve(9);
    this.#bytes[this.#pos] = 0xcb;
    this.#view.setFloat64(this.#pos + 1, value);
    this.#pos += 9;
  }

  #byte(value: number): void {
    this.#reserve(1);
    this.#bytes[this.#pos++] = value;
  }

  #u8u16(type: number, value: number): void {
    this.#reserve(3);
    this.#bytes[this.#pos] = type;
    this.#view.setUint16(this.#pos + 1, value);
    this.#pos += 3;
  }

  #u8u32(type: number, value: number): void {
    this.#reserve(5);
    this.#bytes[this.#pos] = type;
    this.#view.setUint32(this.#pos + 1, value);
    this.#pos += 5;
  }

  #reserve(more: number): void {
    const needed = this.#pos + more;
    if (needed <= this.#bytes.length) return;
    let size = this.#bytes.length * 2;
    while (size < needed) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#bytes.subarray(0, this.#pos));
    this.#bytes = grown;
    this.#view = new DataView(grown.buffer);
  }
}
