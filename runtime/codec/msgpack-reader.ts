import { isUtf8 } from 'node:buffer';

/** What {@link MsgpackReader.decode} returns for input it leaves to the library. */
export const NOT_READ: unique symbol = Symbol('not read');

const MAX_DEPTH = 100;

const STRING = 0;
const ARRAY = 1;
const MAP = 2;
type Sized = typeof STRING | typeof ARRAY | typeof MAP;
/** Strings up to this many bytes (keys, event types, names) are kept and given out again. */
const CACHED_MAX = 16;
const CACHE_SLOTS = 1024;

/**
 * A MessagePack reader for plain data (nil, booleans, numbers, strings, arrays and maps with
 * string keys) that returns exactly what `@msgpack/msgpack`'s `Decoder` with its defaults returns
 * for the same bytes, faster: strings are made by Node from the bytes (one allocation, no
 * intermediate array), and short ones (keys, event types, domain names) are kept in a small table
 * and given out again instead of being decoded each time.
 *
 * Anything else (binary, extensions such as timestamps, non-string map keys, `__proto__` keys,
 * invalid UTF-8, nesting deeper than {@link MAX_DEPTH}, truncated input or bytes after the value)
 * makes {@link MsgpackReader.decode} return {@link NOT_READ}, and the caller decodes the bytes
 * with the library instead, so the result (or the error) never differs.
 */
export class MsgpackReader {
  #bytes: Buffer = EMPTY;
  #pos = 0;
  #end = 0;
  readonly #cache: (string | undefined)[] = new Array<string | undefined>(CACHE_SLOTS).fill(
    undefined,
  );
  readonly #scratch = new DataView(new ArrayBuffer(8));

  /** The decoded value, or {@link NOT_READ} when it holds something left to the library. */
  decode(bytes: Uint8Array): unknown {
    this.#bytes = Buffer.isBuffer(bytes)
      ? bytes
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#pos = 0;
    this.#end = bytes.length;
    try {
      const value = this.#value(1);
      if (value === NOT_READ || this.#pos !== this.#end) return NOT_READ;
      return value;
    } finally {
      this.#bytes = EMPTY;
    }
  }

  #value(depth: number): unknown {
    if (this.#pos >= this.#end) return NOT_READ;
    const bytes = this.#bytes;
    const type = bytes[this.#pos++] as number;
    if (type < 0x80) return type;
    if (type < 0x90) return this.#map(type - 0x80, depth);
    if (type < 0xa0) return this.#array(type - 0x90, depth);
    if (type < 0xc0) return this.#string(type - 0xa0);
    if (type >= 0xe0) return type - 0x100;
    switch (type) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xca:
        return this.#float(4);
      case 0xcb:
        return this.#float(8);
      case 0xcc:
        return this.#unsigned(1);
      case 0xcd:
        return this.#unsigned(2);
      case 0xce:
        return this.#unsigned(4);
      case 0xcf:
        return this.#wide(this.#unsigned(4));
      case 0xd0:
        return this.#signed(1);
      case 0xd1:
        return this.#signed(2);
      case 0xd2:
        return this.#signed(4);
      case 0xd3:
        return this.#wide(this.#signed(4));
      case 0xd9:
        return this.#sized(1, STRING, depth);
      case 0xda:
        return this.#sized(2, STRING, depth);
      case 0xdb:
        return this.#sized(4, STRING, depth);
      case 0xdc:
        return this.#sized(2, ARRAY, depth);
      case 0xdd:
        return this.#sized(4, ARRAY, depth);
      case 0xde:
        return this.#sized(2, MAP, depth);
      case 0xdf:
        return this.#sized(4, MAP, depth);
      default:
        // 0xc1 (never used), binary, extensions: the library's.
        return NOT_READ;
    }
  }

  /** A 64-bit integer as the library reads it: the high word (read) times 2^32 plus the low. */
  #wide(high: number | typeof NOT_READ): number | typeof NOT_READ {
    if (high === NOT_READ) return NOT_READ;
    const low = this.#unsigned(4);
    return low === NOT_READ ? NOT_READ : high * 0x1_0000_0000 + low;
  }

  /** A string, array or map whose size the next `width` bytes give. */
  #sized(width: number, kind: Sized, depth: number): unknown {
    const size = this.#unsigned(width);
    if (size === NOT_READ) return NOT_READ;
    if (kind === STRING) return this.#string(size);
    return kind === ARRAY ? this.#array(size, depth) : this.#map(size, depth);
  }

  #array(size: number, depth: number): unknown {
    if (depth > MAX_DEPTH || size > this.#end - this.#pos) return NOT_READ;
    const items: unknown[] = [];
    for (let index = 0; index < size; index++) {
      const item = this.#value(depth + 1);
      if (item === NOT_READ) return NOT_READ;
      items.push(item);
    }
    return items;
  }

  #map(size: number, depth: number): unknown {
    if (depth > MAX_DEPTH || size * 2 > this.#end - this.#pos) return NOT_READ;
    const object: Record<string, unknown> = {};
    for (let index = 0; index < size; index++) {
      // Number keys and `__proto__` are left to the library (it converts or refuses them).
      const key = this.#value(depth + 1);
      if (typeof key !== 'string' || key === '__proto__') return NOT_READ;
      const value = this.#value(depth + 1);
      if (value === NOT_READ) return NOT_READ;
      object[key] = value;
    }
    return object;
  }

  #string(length: number): string | typeof NOT_READ {
    const start = this.#pos;
    const end = start + length;
    if (end > this.#end) return NOT_READ;
    const bytes = this.#bytes;
    this.#pos = end;
    let ascii = true;
    let hash = length;
    for (let index = start; index < end; index++) {
      const byte = bytes[index] as number;
      if (byte >= 0x80) {
        ascii = false;
        break;
      }
      hash = (Math.imul(hash, 31) + byte) | 0;
    }
    if (!ascii) {
      // Valid UTF-8 reads the same with Node's decoder as with the library's; invalid UTF-8 is
      // left to the library, whose replacement of bad sequences differs.
      // Above 200 bytes the library decodes with a TextDecoder, which drops a leading BOM.
      if (length > 200 && bytes[start] === 0xef && bytes[start + 1] === 0xbb) return NOT_READ;
      return isUtf8(bytes.subarray(start, end)) ? bytes.toString('utf8', start, end) : NOT_READ;
    }
    if (length > CACHED_MAX) return bytes.toString('latin1', start, end);
    const slot = (hash >>> 0) % CACHE_SLOTS;
    const cached = this.#cache[slot];
    if (cached !== undefined && cached.length === length) {
      let same = true;
      for (let index = 0; index < length; index++) {
        if (cached.charCodeAt(index) !== bytes[start + index]) {
          same = false;
          break;
        }
      }
      if (same) return cached;
    }
    const text = bytes.toString('latin1', start, end);
    this.#cache[slot] = text;
    return text;
  }

  #unsigned(width: number): number | typeof NOT_READ {
    const pos = this.#pos;
    if (pos + width > this.#end) return NOT_READ;
    const bytes = this.#bytes;
    this.#pos = pos + width;
    if (width === 1) return bytes[pos] as number;
    if (width === 2) return ((bytes[pos] as number) << 8) | (bytes[pos + 1] as number);
    return (
      (bytes[pos] as number) * 0x100_0000 +
      (((bytes[pos + 1] as number) << 16) |
        ((bytes[pos + 2] as number) << 8) |
        (bytes[pos + 3] as number))
    );
  }

  #signed(width: number): number | typeof NOT_READ {
    const value = this.#unsigned(width);
    if (value === NOT_READ) return NOT_READ;
    const bits = width * 8;
    return bits === 32 ? value | 0 : (value << (32 - bits)) >> (32 - bits);
  }

  #float(width: number): number | typeof NOT_READ {
    const pos = this.#pos;
    if (pos + width > this.#end) return NOT_READ;
    const scratch = this.#scratch;
    for (let index = 0; index < width; index++) {
      scratch.setUint8(index, this.#bytes[pos + index] as number);
    }
    this.#pos = pos + width;
    return width === 4 ? scratch.getFloat32(0) : scratch.getFloat64(0);
  }
}

const EMPTY = Buffer.alloc(0);
