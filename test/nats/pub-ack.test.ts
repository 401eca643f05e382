import { describe, expect, it } from 'vitest';
import { pubAckOf } from '../../runtime/nats/pub-ack.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** What the runtime reads of an acknowledgement: its sequence, whether a duplicate, its error. */
function read(ack: { seq?: number; duplicate?: boolean; error?: unknown }): unknown {
  return { seq: ack.seq, duplicate: ack.duplicate === true, error: ack.error };
}

describe('pubAckOf', () => {
  it('reads acknowledgements as JSON.parse does, whatever their shape', () => {
    const acks = [
      '{"stream":"JETACTOR_bank","seq":1}',
      '{"stream":"JETACTOR_bank","seq":123456789012345}',
      '{"stream":"JETACTOR_bank","seq":42,"duplicate":true}',
      '{"stream":"JETACTOR_bank","seq":42,"duplicate": true}',
      '{"stream":"JETACTOR_bank","seq":42, "duplicate" : true}',
      '{"stream":"JETACTOR_bank","domain":"hub","seq":7}',
      '{"stream":"JETACTOR_bank","seq":7,"duplicate":false}',
      '{"stream":"S","seq": 8}',
      '{ "stream":"S","seq":9}',
      '{"seq":10,"stream":"S"}',
      '{"stream":"S","seq":1234567890123456}',
      '{"stream":"a\\"seq\\":5","seq":11}',
      '{"stream":"S"}',
      '{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}',
      '{"stream":"S","seq":3,"error":{"code":503,"description":"x"}}',
      '{"type":"io.nats.jetstream.api.v1.pub_ack","stream":"S","seq":12}',
    ];
    for (const ack of acks) {
      expect(read(pubAckOf(bytes(ack))), ack).toEqual(read(JSON.parse(ack) as object));
    }
  });

  it('throws on what is not JSON, as JSON.parse does', () => {
    expect(() => pubAckOf(bytes('{"stream":"S","seq":5'))).toThrow(SyntaxError);
    expect(() => pubAckOf(bytes('nonsense'))).toThrow(SyntaxError);
    expect(() => pubAckOf(new Uint8Array(0))).toThrow(SyntaxError);
  });
});
