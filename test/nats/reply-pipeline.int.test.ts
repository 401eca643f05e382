import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../runtime/clock.js';
import {
  ReplyLostError,
  ReplyPipeline,
  ReplyTimeoutError,
  requestIdOf,
} from '../../runtime/nats/reply-pipeline.js';
import { assertBuilt } from '../fixtures/run-cli.js';
import { connectShared, sharedNatsUrl, startNatsServer, uniqueName } from '../helpers/nats.js';

const garbageFixture = fileURLToPath(new URL('../fixtures/pipeline-garbage.js', import.meta.url));
const builtPipeline = fileURLToPath(
  new URL('../../dist/runtime/nats/reply-pipeline.js', import.meta.url),
);

describe('reply pipeline', () => {
  it('lets the young generation collect what an answered request held, whatever became of the table of waiting requests', async () => {
    // A request's callback used to stay reachable from the hash tables a Map had replaced: once
    // promoted, such a table kept every request waiting at its rehash alive through scavenges,
    // and all the request held was promoted with it. In its own process for --expose-gc.
    assertBuilt(builtPipeline);
    const rounds = 30;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--expose-gc', garbageFixture, sharedNatsUrl(), String(rounds)],
      { timeout: 60_000 },
    );
    const { answered, promotedBytes } = JSON.parse(stdout.trim()) as {
      answered: number;
      promotedBytes: number;
    };
    expect(answered).toBe(rounds);
    // Each round's probe holds 1 MB: promoted, they would add about 30 MB (measured: 30.3 MB
    // before entries were emptied, 2.8 MB after, the rest being the requests still waiting).
    expect(promotedBytes).toBeLessThan(rounds * 1_000_000 * 0.3);
  });

  describe('on the shared server', () => {
    let nc: NatsConnection;
    beforeAll(async () => {
      nc = await connectShared();
    });
    afterAll(async () => {
      await nc.close();
    });

    it('gives each request its own reply when replies come out of order, and ignores what no request waits for', async () => {
      const shuffle = uniqueName('shuffle');
      // Answers each request after a delay that depends on its body: later requests first.
      nc.subscribe(shuffle, {
        callback: (_, msg) => {
          const n = Number(msg.string());
          setTimeout(() => msg.respond(`re ${n}`), (200 - n) % 37);
        },
      });
      await nc.flush();
      const pipeline = new ReplyPipeline(nc, systemClock, 30_000);
      const prefix = (await pipeline.request(shuffle, '0')).subject.replace(/\.\d+$/, '');
      // Published on the reply subscription by someone else: no request waits for these.
      for (const token of ['x1', '', '9999999', '12345678901234567890', '1a']) {
        nc.publish(`${prefix}.${token}`, 'junk');
      }
      const replies = await Promise.all(
        Array.from({ length: 200 }, (_, n) => pipeline.request(shuffle, String(n))),
      );
      expect(replies.map((reply) => reply.string())).toEqual(
        Array.from({ length: 200 }, (_, n) => `re ${n}`),
      );
      expect(pipeline.size).toBe(0);
      pipeline.close();
    });

    it('hands what a callback throws to onDefect and keeps reading replies', async () => {
      const echo = uniqueName('echo');
      const silent = uniqueName('silent');
      nc.subscribe(echo, {
        callback: (_, msg) => {
          msg.respond(msg.data);
        },
      });
      // Takes requests and never answers.
      nc.subscribe(silent, { callback: () => undefined });
      await nc.flush();
      const defects: unknown[] = [];
      const pipeline = new ReplyPipeline(nc, systemClock, 200, (error) => defects.push(error));
      const thrown = new Error('a defect in onReply');
      const failing = new Promise<void>((resolve) => {
        pipeline.send(echo, new TextEncoder().encode('first'), undefined, {
          replied: () => {
            resolve();
            throw thrown;
          },
          failed: () => undefined,
        });
      });
      await failing;
      // Times out: its failed throws as well.
      const late = new Error('a defect in failed');
      pipeline.send(silent, undefined, undefined, {
        replied: () => undefined,
        failed: () => {
          throw late;
        },
      });
      await expect.poll(() => defects.length, { timeout: 5_000 }).toBe(2);
      expect(defects).toEqual([thrown, late]);
      // The connection still reads: the next request gets its reply.
      expect((await pipeline.request(echo, 'second')).string()).toBe('second');
      pipeline.close();
    });

    it('reads the request id at the end of a reply subject as decoding the subject would', async () => {
      const base = `_R.${uniqueName('ids')}`;
      const seen: { fromBytes: number; fromText: number }[] = [];
      nc.subscribe(`${base}.>`, {
        callback: (_, msg) => {
          const fromBytes = requestIdOf(msg, base.length);
          const token = msg.subject.slice(base.length + 1);
          seen.push({ fromBytes, fromText: /^\d{1,15}$/.test(token) ? Number(token) : NaN });
        },
      });
      await nc.flush();
      const tokens = ['1', '42', '007', '123456789012345', 'x', '4x2', '1234567890123456', '-3'];
      for (const token of tokens) nc.publish(`${base}.${token}`);
      await nc.flush();
      await expect.poll(() => seen.length).toBe(tokens.length);
      for (const { fromBytes, fromText } of seen) expect(fromBytes).toBe(fromText);
    });
  });

  it('publishes requests without nats.js publish() on this nats.js version, and still refuses what it refuses', async () => {
    // A connection of its own: its publish() is replaced, and it is drained at the end.
    const own = await connectShared();
    const subject = uniqueName('direct');
    own.subscribe(subject, {
      callback: (_, msg) => {
        msg.respond(`re ${msg.string()}`);
      },
    });
    await own.flush();
    const pipeline = new ReplyPipeline(own, systemClock, 5_000);
    const publish = own.publish.bind(own);
    let viaPublish = 0;
    own.publish = (...args: Parameters<NatsConnection['publish']>) => {
      viaPublish += 1;
      publish(...args);
    };
    // Fails when a nats.js upgrade changes the protocol handler's shape: requests then go
    // through publish() and its checks again.
    expect((await pipeline.request(subject, 'one')).string()).toBe('re one');
    expect(viaPublish).toBe(0);
    // A subject nats.js refuses goes to publish(), which throws its error, as before.
    expect(() =>
      pipeline.send('bad subject', undefined, undefined, {
        replied: () => {},
        failed: () => {},
      }),
    ).toThrow(/subject/i);
    expect(viaPublish).toBe(1);
    await expect(pipeline.request('', 'x')).rejects.toThrow(/subject/i);
    // Draining, once nats.js publishes no more: its error, as before.
    const protocol = (own as unknown as { protocol: { noMorePublishing: boolean } }).protocol;
    protocol.noMorePublishing = true;
    expect(() =>
      pipeline.send(subject, 'late', undefined, { replied: () => {}, failed: () => {} }),
    ).toThrow(/drain/i);
    expect(viaPublish).toBe(3);
    protocol.noMorePublishing = false;
    expect((await pipeline.request(subject, 'two')).string()).toBe('re two');
    expect(viaPublish).toBe(3);
    pipeline.close('test over');
    await own.close();
  });

  it('fails the requests still waiting once the connection is back after a disconnect, and serves new ones', async () => {
    const server = await startNatsServer();
    const nc = await connect({
      servers: server.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 50,
    });
    try {
      // Takes requests and never answers: without the reconnect they would wait 30 s.
      nc.subscribe('silent', { callback: () => undefined });
      nc.subscribe('echo', {
        callback: (_, msg) => {
          msg.respond(msg.data);
        },
      });
      await nc.flush();
      const pipeline = new ReplyPipeline(nc, systemClock, 30_000);
      const waiting = [pipeline.request('silent', 'a'), pipeline.request('silent', 'b')];
      await nc.flush();
      expect(pipeline.size).toBe(2);

      await server.kill();
      // Sent while disconnected: nats.js drops it before it reconnects.
      waiting.push(pipeline.request('echo', 'lost'));
      const settled = Promise.allSettled(waiting);
      await server.restart();
      const restartedAt = Date.now();
      const outcomes = await settled;
      expect(Date.now() - restartedAt).toBeLessThan(5_000);
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected');
        const reason = (outcome as PromiseRejectedResult).reason as Error;
        expect(reason).toBeInstanceOf(ReplyLostError);
        // Callers that send again after a timeout (the event store, the client) do so at once.
        expect(reason).toBeInstanceOf(ReplyTimeoutError);
        expect(reason.message).toMatch(/connection to the server dropped before the reply/);
      }
      expect(pipeline.size).toBe(0);

      const reply = await pipeline.request('echo', 'again');
      expect(reply.string()).toBe('again');
      pipeline.close();
    } finally {
      await nc.close();
      await server.cleanup();
    }
  });
});
