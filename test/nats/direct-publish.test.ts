import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { directPublish } from '../../runtime/nats/direct-publish.js';

/** A connection's two publishing paths, recorded: `publish()` and its protocol handler's. */
function connection(options: { shaped: boolean; closed?: boolean; noMorePublishing?: boolean }) {
  const calls: [string, string, unknown][] = [];
  const nc = {
    isClosed: () => options.closed ?? false,
    publish: (subject: string, _data: unknown, publishOptions: unknown) => {
      calls.push(['publish()', subject, publishOptions]);
    },
    protocol: options.shaped
      ? {
          noMorePublishing: options.noMorePublishing ?? false,
          publish: (subject: string, _data: unknown, publishOptions: unknown) => {
            calls.push(['protocol', subject, publishOptions]);
          },
        }
      : {},
  };
  return { nc: nc as unknown as NatsConnection, calls };
}

describe('directPublish', () => {
  it('publishes a plain subject through the protocol handler, with reply and headers', () => {
    const { nc, calls } = connection({ shaped: true });
    directPublish(nc)('events.bank.Account.acc-1', new Uint8Array(1), '_INBOX.x.1', undefined);
    expect(calls).toEqual([
      ['protocol', 'events.bank.Account.acc-1', { reply: '_INBOX.x.1', headers: undefined }],
    ]);
  });

  it('leaves to publish() what it checks: a subject with whitespace or empty, a closed or draining connection', () => {
    for (const [options, subject] of [
      [{ shaped: true }, 'a b'],
      [{ shaped: true }, 'a\tb'],
      [{ shaped: true }, 'a\r\nb'],
      [{ shaped: true }, ''],
      [{ shaped: true, closed: true }, 'a.b'],
      [{ shaped: true, noMorePublishing: true }, 'a.b'],
      [{ shaped: false }, 'a.b'],
    ] as const) {
      const { nc, calls } = connection(options);
      directPublish(nc)(subject, undefined, undefined, undefined);
      expect(
        calls.map(([path]) => path),
        JSON.stringify([options, subject]),
      ).toEqual(['publish()']);
    }
  });
});
