import { describe, expect, it } from 'vitest';
import { parseAckSubject } from '../../runtime/event-store/subject-pull.js';

function parse(subject: string): { sequence: number; delivery: number } | undefined {
  const out = { sequence: 0, delivery: 0 };
  return parseAckSubject(Buffer.from(subject), out) ? out : undefined;
}

describe('parseAckSubject', () => {
  it('reads stream and delivery sequence from the 9-token form of nats-server 2.9', () => {
    expect(
      parse('$JS.ACK.jetactor_bank.jetactor_read_x_1.1.84213.17.1733400000000000000.5'),
    ).toEqual({ sequence: 84213, delivery: 17 });
  });

  it('reads them from the forms with domain and account hash, with and without the random token', () => {
    expect(parse('$JS.ACK.hub.ACCHASH.jetactor_bank.c_1.1.900.3.1733400000000000000.0')).toEqual({
      sequence: 900,
      delivery: 3,
    });
    expect(
      parse('$JS.ACK.hub.ACCHASH.jetactor_bank.c_1.1.900.3.1733400000000000000.0.r4nd'),
    ).toEqual({ sequence: 900, delivery: 3 });
  });

  it('refuses subjects that are not JetStream acknowledgement subjects', () => {
    expect(parse('_INBOX.abc.1')).toBeUndefined();
    expect(parse('$JS.ACK.s.c.1.2')).toBeUndefined();
    expect(parse('$JS.ACK.s.c.1.x2.3.4.5')).toBeUndefined();
    expect(parse('$JS.ACK.s.c.1.0.3.4.5')).toBeUndefined();
    expect(parse('$JS.ACK.s.c.1..3.4.5')).toBeUndefined();
    expect(parse('$JS.NAK.s.c.1.2.3.4.5')).toBeUndefined();
  });
});
