import { describe, expect, it } from 'vitest';
import type { CommandResult } from '../../runtime/aggregate/command.js';
import { MsgpackCodec } from '../../runtime/codec/msgpack-codec.js';
import { fromCompactResult, toCompactResult } from '../../runtime/messaging/compact-result.js';

const stream = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };
const codec = new MsgpackCodec();

function result(overrides: Partial<CommandResult> = {}): CommandResult {
  const meta = {
    domain: 'bank',
    aggregate: 'Account',
    aggregateId: 'acc-1',
    version: 3,
    timestamp: 1_700_000_000_000,
    commandId: 'cmd-1',
    correlationId: 'cmd-1',
    causationId: 'cmd-1',
  };
  return {
    commandId: 'cmd-1',
    version: 4,
    events: [
      { type: 'Deposited', data: { amount: 10 }, meta },
      {
        type: 'Noted',
        data: { text: 'x' },
        meta: {
          ...meta,
          version: 4,
          correlationId: 'corr',
          causationId: 'cause',
          actor: 'ann',
          schemaVersion: 2,
        },
      },
    ],
    response: { balance: 10 },
    duplicate: false,
    position: 42,
    ...overrides,
  };
}

describe('the compact form of a command result', () => {
  it('stands for exactly the full result, through the codec', () => {
    for (const full of [
      result(),
      result({ duplicate: true }),
      result({ response: undefined, events: [] }),
    ]) {
      const compact = codec.decode(codec.encode(toCompactResult(full)));
      expect(fromCompactResult(compact, stream)).toEqual(full);
    }
  });

  it('is about half the bytes of the full form for one event', () => {
    const one = result({ events: result().events.slice(0, 1) });
    const compact = codec.encode(toCompactResult(one)).length;
    expect(compact).toBeLessThan(codec.encode(one).length * 0.6);
  });

  it('is not read from a full result or anything else', () => {
    const compact = toCompactResult(result()) as unknown as Record<string, unknown>;
    for (const body of [
      result(),
      null,
      'text',
      { ...compact, i: 1 },
      { ...compact, v: '4' },
      { ...compact, p: undefined },
      { ...compact, e: {} },
      { ...compact, e: [{ t: 'Deposited', v: 1, ts: 1 }] },
    ]) {
      expect(fromCompactResult(body, stream)).toBeUndefined();
    }
  });
});
