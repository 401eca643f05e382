import { randomFillSync } from 'node:crypto';

/** Random bytes for 256 ids, refilled when used up. */
const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;
/** The id being written, as ASCII. */
const text = Buffer.allocUnsafe(36);
const hexDigits = Buffer.from('0123456789abcdef', 'latin1');
const DASH = 0x2d;

/**
 * A random UUID (version 4, RFC 9562), as `crypto.randomUUID()` makes: the default command id of
 * nodes and clients. Written as ASCII into one buffer and read out as one string: `randomUUID`
 * builds its string from 20 concatenations, about 600 bytes of garbage per id, which a node
 * that makes an id per command pays for in garbage collection.
 */
export function randomCommandId(): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  let at = 0;
  for (let index = 0; index < 16; index++) {
    let byte = pool[offset + index] as number;
    if (index === 6)
      byte = (byte & 0x0f) | 0x40; // version 4
    else if (index === 8) byte = (byte & 0x3f) | 0x80; // variant 10
    text[at++] = hexDigits[byte >> 4] as number;
    text[at++] = hexDigits[byte & 0x0f] as number;
    if (index === 3 || index === 5 || index === 7 || index === 9) text[at++] = DASH;
  }
  offset += 16;
  return text.toString('latin1', 0, 36);
}
