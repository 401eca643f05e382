import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../runtime/clock.js';
import { EncodedHeaders } from '../../runtime/nats/encoded-headers.js';
import { poolProtocolLines } from '../../runtime/nats/pooled-protocol-lines.js';
import { ReplyPipeline } from '../../runtime/nats/reply-pipeline.js';
import { connectShared, echoMessages, uniqueName } from '../helpers/nats.js';

const utf8 = new TextDecoder();

describe('poolProtocolLines (real nats-server)', () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connectShared();
  });
  afterAll(async () => {
    await nc.close();
  });

  it('applies to the connections of this nats.js version, once', () => {
    // Fails when a nats.js upgrade changes the shape: the lines are then no longer pooled.
    expect(poolProtocolLines(nc)).toBe(true);
    const patched = (nc as unknown as { protocol: { sendCommand: unknown } }).protocol.sendCommand;
    expect(poolProtocolLines(nc)).toBe(true);
    expect((nc as unknown as { protocol: { sendCommand: unknown } }).protocol.sendCommand).toBe(
      patched,
    );
  });

  it('leaves an object without that shape alone', () => {
    expect(poolProtocolLines({} as NatsConnection)).toBe(false);
    expect(poolProtocolLines({ protocol: {} } as unknown as NatsConnection)).toBe(false);
  });

  it('still delivers messages with and without headers, on UTF-8 subjects, with replies', async () => {
    poolProtocolLines(nc);
    const subject = `${uniqueName('pooled')}.zoë.😀`;
    const { received, done } = echoMessages(nc, subject, 3);
    await nc.flush();
    nc.publish(`${subject}.plain`, 'one');
    nc.publish(`${subject}.headers`, 'two', {
      headers: new EncodedHeaders([['Jetactor-Actor', 'Zoë']]),
    });
    const pipeline = new ReplyPipeline(nc, systemClock, 5_000);
    const reply = await pipeline.request(`${subject}.request`, new TextEncoder().encode('three'));
    await done;
    pipeline.close('test over');
    expect(received.map((msg) => [msg.subject, utf8.decode(msg.data)])).toEqual([
      [`${subject}.plain`, 'one'],
      [`${subject}.headers`, 'two'],
      [`${subject}.request`, 'three'],
    ]);
    expect(received[1]?.headers?.get('Jetactor-Actor')).toBe('Zoë');
    expect(utf8.decode(reply.data)).toBe('re: three');
  });
});
