import { randomUUID } from 'node:crypto';
import { MsgpackCodec } from '../runtime/index.js';
import { encodeEnvelope } from '../runtime/event-store/commit-envelope.js';

/**
 * Size in bytes of the commit message jetactor writes for one `deposit` of the bank domain: one
 * `Deposited` event with its metadata and the command record with its response. The raw
 * contenders send messages of this size, so every contender moves the same bytes.
 */
export function depositCommitSize(): number {
  const commandId = randomUUID();
  const bytes = encodeEnvelope(
    new MsgpackCodec(),
    1_234_567,
    [
      {
        type: 'Deposited',
        data: { amount: 100 },
        meta: {
          domain: 'bank',
          aggregate: 'Account',
          aggregateId: 'acc-1234',
          version: 42,
          timestamp: Date.now(),
          commandId,
          correlationId: commandId,
          causationId: commandId,
        },
      },
    ],
    [{ id: commandId, response: { balance: 4_200 } }],
  );
  return bytes.length;
}

/** JSON text padded with a `pad` field to exactly `size` bytes (when it is shorter). */
export function paddedJson(value: Record<string, unknown>, size: number): Uint8Array {
  const bare = JSON.stringify({ ...value, pad: '' });
  const pad = Math.max(0, size - Buffer.byteLength(bare));
  return new TextEncoder().encode(JSON.stringify({ ...value, pad: 'x'.repeat(pad) }));
}
